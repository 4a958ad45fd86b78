"""The SendGrid Event Webhook's signature: ECDSA P-256 with SHA-256 over the timestamp header
followed by the raw body, exactly as sendgrid-python's `EventWebhook.verify_signature` checks it.

    verifier = WebhookVerifier(settings.events.sendgrid_public_key, replay_window_s=600)
    verifier.check(request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                   body, now=time.time())          # -> SignatureCheck.VALID, MISSING, ...

The signature header is base64 of the DER-encoded signature; the public key is what SendGrid's
settings page shows: base64 of the DER SubjectPublicKeyInfo (a PEM block is accepted too). A
valid signature whose timestamp is further than the replay window from now (either way) is
REPLAYED: a captured request cannot be played back later. Within the window a repeat is harmless:
events are recorded once, by `sg_event_id`.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from gomailpy.errors import ConfigError

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_ALGORITHM = ec.ECDSA(hashes.SHA256())


class SignatureCheck(StrEnum):
    VALID = "valid"
    MISSING = "missing"  # no signature or no timestamp header: 401
    INVALID = "invalid"  # not signed by the configured key (or not readable): 403
    REPLAYED = "replayed"  # signed, but the timestamp is outside the replay window: 403


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key from config; ConfigError naming the key when it cannot be used."""
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        raise ConfigError(
            f"events.sendgrid_public_key is not a public key (base64 DER, as SendGrid shows"
            f" it): {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("events.sendgrid_public_key is not an elliptic-curve (ECDSA) key")
    return key


def public_key_text(key: ec.EllipticCurvePublicKey) -> str:
    """`key` as SendGrid shows a verification key: base64 of its DER SubjectPublicKeyInfo."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The signature header SendGrid would send for `body` at `timestamp` (stand-ins, tests)."""
    return base64.b64encode(private_key.sign(timestamp.encode() + body, _ALGORITHM)).decode()


class WebhookVerifier:
    """Checks one webhook request against the configured key; pure, `now` is given."""

    def __init__(self, public_key: str, *, replay_window_s: float) -> None:
        self._key = load_public_key(public_key)
        self._window_s = replay_window_s

    def check(
        self, signature: str | None, timestamp: str | None, body: bytes, *, now: float
    ) -> SignatureCheck:
        if not signature or not timestamp:
            return SignatureCheck.MISSING
        try:
            decoded = base64.b64decode(signature.strip(), validate=True)
            self._key.verify(decoded, timestamp.encode("utf-8") + body, _ALGORITHM)
        except (InvalidSignature, ValueError, binascii.Error, UnicodeError):
            return SignatureCheck.INVALID
        # Checked after the signature, so that the timestamp judged is one SendGrid signed.
        try:
            signed_at = int(timestamp.strip())  # epoch seconds; refuses nan and inf
        except ValueError:
            return SignatureCheck.INVALID
        if abs(now - signed_at) > self._window_s:
            return SignatureCheck.REPLAYED
        return SignatureCheck.VALID

"""Mailgun's signed event webhook: the signature check and its events as gomailpy events.

    verifier = MailgunVerifier(signing_key, replay_window_s=600)
    verifier.check(post.get("signature"), now=time.time())    # -> SignatureCheck.VALID, ...
    events = parse_mailgun([post["event-data"]], instance="mailgun-eu")

Mailgun posts one event per request, as JSON: `{"signature": {"timestamp", "token",
"signature"}, "event-data": {...}}`. The signature is the hex HMAC-SHA256 of `timestamp + token`
keyed with the account's HTTP webhook signing key (Mailgun's user manual, "Securing Webhooks");
it covers neither the body nor the URL, so a captured signature could be replayed with other
event data: the replay window refuses old timestamps, and `remember` refuses a token seen
before (after its events were queued), as Mailgun's manual advises.

| Mailgun event                       | Event                                             |
|-------------------------------------|---------------------------------------------------|
| accepted                            | sent (Mailgun took it and will try to deliver it) |
| rejected                            | rejected (Mailgun refused the request)            |
| delivered                           | delivered                                         |
| failed, severity temporary          | deferred                                          |
| failed, severity permanent          | bounced (hard or soft) or blocked: by reason      |
|   reason suppress-bounce            | bounced hard, reason suppressed                   |
|   reason suppress-complaint / -unsubscribe | dropped (Mailgun's own list: never sent)   |
|   reason espblock                   | blocked (the mailbox provider refused the sender) |
|   reason old                        | bounced soft, expired (retries ran out)           |
| complained                          | complained                                        |
| unsubscribed                        | unsubscribed                                      |
| opened, clicked                     | opened, clicked (url as reason; raw.userAgent;    |
|                                     | raw.machine when Mailgun names a bot)             |
| anything else                       | unknown (raw kept)                                |

Bounces and deferrals are classified by `delivery-status` (its SMTP `code`, `message` or
`description`, and `enhanced-code` / `bounce-code`) with gomailpy.bounce_reasons, so a policy
block answered 5.7.1 is `blocked`, never a hard bounce.

Correlation: sends carry the custom variables `gomailpy-id` and `gomailpy-provider`
(gomailpy.providers.mailgun), which come back as `user-variables`; without them, a
`message-id` gomailpy wrote (`<id@gomailpy>`) names the email. The provider message id is
`message.headers.message-id`, the id Mailgun answered the send with. The event id is derived
from Mailgun's event `id` and `timestamp` (Mailgun's id is unique only within a day), so the
same event posted again is recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections import OrderedDict
from typing import Any

from gomailpy.bounce_reasons import (
    Classification,
    Reason,
    classify,
    find_code,
    outcome,
    refine,
)
from gomailpy.email.mime import MESSAGE_ID_DOMAIN
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, iso, stable_id
from gomailpy.feedback.signature import SignatureCheck

PROVIDER = "mailgun"
MESSAGE_ID_VARIABLE = "gomailpy-id"
INSTANCE_VARIABLE = "gomailpy-provider"
_LATEST_EPOCH_S = 253_402_300_800  # 10000-01-01: past it, no date can be written
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MAX_TOKEN_CHARS = 256  # Mailgun's tokens are 50 characters
MAX_AGENT_CHARS = 512  # as gomailpy.bulk.hits keeps a user agent
MAX_REMEMBERED_TOKENS = 100_000  # a bound on memory; the oldest are forgotten first

_TYPES: dict[str, EventType] = {
    "accepted": EventType.SENT,
    "rejected": EventType.REJECTED,
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}
# failed/permanent `reason` -> the reason it names (None: classify by delivery-status alone).
_NAMED: dict[str, Reason] = {
    "suppress-bounce": Reason.SUPPRESSED,
    "espblock": Reason.BLOCKED,
    "old": Reason.EXPIRED,
}
_DROPPED = frozenset({"suppress-complaint", "suppress-unsubscribe"})


# --- the signature ---------------------------------------------------------------------------


def sign(signing_key: str, timestamp: str, token: str) -> str:
    """The `signature` Mailgun sends with `timestamp` and `token` (stand-ins, tests)."""
    message = f"{timestamp}{token}".encode()
    return hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()


class MailgunVerifier:
    """Checks the `signature` object of one webhook post against one signing key; pure: `now`
    is given. Tokens of posts whose events were taken are remembered (`remember`) for the
    replay window, in this process: a post played back with one is REPLAYED. (Several API
    nodes each remember their own; the events' ids keep a replay from counting twice anyway.)"""

    def __init__(self, signing_key: str, *, replay_window_s: float) -> None:
        self._key = signing_key
        self._window_s = replay_window_s
        self._seen: OrderedDict[str, float] = OrderedDict()  # token -> when it was signed

    def check(self, signature: Any, *, now: float) -> SignatureCheck:
        if not isinstance(signature, dict) or not all(
            signature.get(k) not in (None, "") for k in ("timestamp", "token", "signature")
        ):
            return SignatureCheck.MISSING
        timestamp, token, given = (signature[k] for k in ("timestamp", "token", "signature"))
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)  # Mailgun sends a string; a number means the same
        if not (
            isinstance(timestamp, str)
            and timestamp.isascii()
            and timestamp.isdigit()
            and len(timestamp) <= 12
            and isinstance(token, str)
            and token.isascii()
            and len(token) <= _MAX_TOKEN_CHARS
            and isinstance(given, str)
            and _HEX.fullmatch(given)
        ):
            return SignatureCheck.INVALID
        expected = sign(self._key, timestamp, token)
        if not hmac.compare_digest(expected, given.lower()):
            return SignatureCheck.INVALID
        # Judged after the signature, so that the time judged is one Mailgun signed.
        signed_at = int(timestamp)
        if abs(now - signed_at) > self._window_s:
            return SignatureCheck.REPLAYED
        self._forget_before(now - self._window_s)
        if token in self._seen:
            return SignatureCheck.REPLAYED
        return SignatureCheck.VALID

    def remember(self, signature: dict[str, Any], *, now: float) -> None:
        """Refuse `signature`'s token from now on (call once its events are queued: a post
        answered 503 is posted again with the same token, and must then be taken)."""
        self._forget_before(now - self._window_s)
        self._seen[str(signature["token"])] = float(int(str(signature["timestamp"])))
        while len(self._seen) > MAX_REMEMBERED_TOKENS:
            self._seen.popitem(last=False)

    def _forget_before(self, oldest: float) -> None:
        # Tokens are remembered in arrival order, which is close to signing order: stop at the
        # first one still inside the window.
        while self._seen:
            token, signed_at = next(iter(self._seen.items()))
            if signed_at >= oldest:
                break
            del self._seen[token]


# --- the events ------------------------------------------------------------------------------


def parse_mailgun(events: list[Any], *, instance: str | None = None) -> list[Event]:
    """The events of webhook posts (each one's `event-data`), taken on the route of Mailgun
    instance `instance`: they name it unless they name one themselves (user variable).
    EventFormatError for what is not a list of event objects with `event` and a numeric
    `timestamp`."""
    if not isinstance(events, list):
        raise EventFormatError("the Mailgun events are not a JSON array")
    return [_event(entry, index, instance) for index, entry in enumerate(events)]


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _message_id_from_header(header: str | None) -> str | None:
    """gomailpy's message id from a Message-ID it wrote (`<id@gomailpy>`), else None."""
    if header is None:
        return None
    local, at, domain = header.strip().strip("<>").rpartition("@")
    return local if at and domain == MESSAGE_ID_DOMAIN and local else None


def _event(entry: Any, index: int, instance: str | None) -> Event:
    if not isinstance(entry, dict):
        raise EventFormatError(f"event {index} is not a JSON object")
    timestamp = entry.get("timestamp")
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int | float)
        or not math.isfinite(timestamp)
        or not 0 <= timestamp < _LATEST_EPOCH_S
    ):
        raise EventFormatError(f"event {index} has no timestamp in epoch seconds")
    name = entry.get("event")
    if not isinstance(name, str) or not name:
        raise EventFormatError(f"event {index} names no event")
    kind = _TYPES.get(name, EventType.UNKNOWN)
    variables = _object(entry.get("user-variables"))
    headers = _object(_object(entry.get("message")).get("headers"))
    status_block = _object(entry.get("delivery-status"))
    mailgun_reason = _text(entry.get("reason"))
    subtype: str | None = None
    reason: str | None = None
    status: str | None = None
    mta_response = _mta_response(status_block)
    if kind is EventType.BOUNCED and entry.get("severity") == "temporary":
        found = _classified(status_block, mta_response)
        kind, reason, status = EventType.DEFERRED, found.reason.value, found.status
    elif kind is EventType.BOUNCED and mailgun_reason in _DROPPED:
        kind, reason = EventType.DROPPED, mailgun_reason
    elif kind is EventType.BOUNCED:
        # severity permanent (or none given: Mailgun's failed without one is final too)
        found = refine(_NAMED.get(mailgun_reason or ""), _classified(status_block, mta_response))
        kind, subtype = outcome(found, provider_permanent=True)
        reason, status = found.reason.value, found.status
    elif kind is EventType.REJECTED:
        reason = _text(_object(entry.get("reject")).get("reason")) or mailgun_reason
    elif kind is EventType.CLICKED:
        reason = _text(entry.get("url"))
    elif kind is EventType.UNKNOWN:
        reason = f"Mailgun {name}"
    raw = _with_hit_details(entry) if kind in (EventType.OPENED, EventType.CLICKED) else entry
    recipient = _text(entry.get("recipient"))
    if recipient is None and kind is EventType.REJECTED:  # rejected events name none
        recipient = _text(headers.get("to"))
    header_id = _text(headers.get("message-id"))
    identity = entry.get("id")
    event_id = stable_id(
        PROVIDER,
        *(
            (identity, repr(timestamp), name, recipient)
            if isinstance(identity, str) and identity
            else (json.dumps(entry, sort_keys=True, default=str),)
        ),
    )
    return Event(
        id=event_id,
        message_id=_text(variables.get(MESSAGE_ID_VARIABLE)) or _message_id_from_header(header_id),
        recipient=recipient,
        provider=PROVIDER,
        instance=_text(variables.get(INSTANCE_VARIABLE)) or instance,
        type=kind,
        at=iso(float(timestamp)),
        subtype=subtype,
        reason=reason,
        mta_response=mta_response,
        provider_message_id=header_id.strip("<>") if header_id else None,
        raw=raw,
        status=status,
    )


def _with_hit_details(entry: dict[str, Any]) -> dict[str, Any]:
    """An open's or click's `entry` with `userAgent` and `machine` where gomailpy's own hits
    keep them (gomailpy.bulk.hits; `url` already is). Mailgun names the bot it recognised
    (`client-info.bot`, "" for a person): that hit was a machine's; otherwise nothing is
    claimed either way."""
    client = _object(entry.get("client-info"))
    agent = _text(client.get("user-agent"))
    extra: dict[str, Any] = {}
    if agent is not None:
        extra["userAgent"] = agent[:MAX_AGENT_CHARS]
    if _text(client.get("bot")) is not None:
        extra["machine"] = True
    return {**entry, **extra} if extra else entry


def _mta_response(block: dict[str, Any]) -> str | None:
    """The receiving server's words: `message` (else `description`), after the SMTP `code`
    when it is one (Mailgun's own 6xx codes are not) and the text names none itself."""
    text = _text(block.get("message")) or _text(block.get("description"))
    code = block.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 200 <= code < 600:
        if text is None:
            return str(code)
        return text if find_code(text) is not None else f"{code} {text}"
    return text


def _classified(block: dict[str, Any], text: str | None) -> Classification:
    status = _text(block.get("enhanced-code")) or _text(block.get("bounce-code"))
    found = classify(text, status)
    if found.reason is Reason.UNDEFINED and text != _text(block.get("description")):
        # The message said nothing classifiable; Mailgun's own description may.
        by_description = classify(_text(block.get("description")), status)
        if by_description.reason is not Reason.UNDEFINED:
            return by_description
    return found

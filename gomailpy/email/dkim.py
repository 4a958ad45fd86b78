"""DKIM signatures on outgoing SMTP mail (dkimpy): one selector and private key per sending domain.

    providers:
      - name: relay-a
        kind: smtp
        dkim:
          - {domain: example.com, selector: mail2026, key_file: /etc/gomailpy/example.com.pem}
          - {domain: example.org, selector: s1}     # key from the environment:
    GOMAILPY_PROVIDERS__RELAY_A__DKIM_KEYS='{"example.org": "-----BEGIN PRIVATE KEY-----\\n…"}'

    signer = DkimSigner.from_settings(relay.dkim, relay.dkim_keys,   # reads and checks every key
                                      instance="providers[0] (relay-a)", variable=...)
    data = signer.sign(data, "sender@example.com")               # DKIM-Signature prepended

A private key never sits in the YAML: it is a file the YAML names, or the instance's secret
`dkim_keys` (environment only, like every secret), a YAML/JSON mapping of
domain to PEM key (PKCS#1 or PKCS#8, RSA). SES and SendGrid sign with the keys set up in their
own consoles; this is for the relay path only. Every error names the instance and its key as
check-config writes them (`providers[3] (relay-b).dkim.0`), at check-config and at send time alike.

Which key signs: the one whose domain is the sender's (From) domain, else the closest parent
domain configured (`d=example.com` for `news.example.com`, which DMARC's relaxed alignment
accepts). A sender in no configured domain goes out unsigned. Headers and body are
canonicalised relaxed/relaxed, which survives the re-folding relays do.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gomailpy.errors import ConfigError

KEYS_SECRET = ("providers", "smtp", "dkim_keys")
_KEYS_VARIABLE = "GOMAILPY_PROVIDERS__SMTP__DKIM_KEYS"
# Signed besides dkimpy's defaults (From, To, Subject, Date, Message-ID, MIME headers, ...; From
# twice, so that nobody can add a second From below the signature).
# List-Unsubscribe and List-Unsubscribe-Post too: RFC 8058 section 4 wants both signed.
_EXTRA_HEADERS = (b"x-gomailpy-id", b"list-unsubscribe", b"list-unsubscribe-post")


class DkimDomainSettings(BaseModel):
    """One signing domain: an SMTP instance's `dkim[]`."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)  # d=: the From domain (or a parent of it)
    selector: str = Field(min_length=1)  # s=: the TXT record is <selector>._domainkey.<domain>
    key_file: str | None = None  # a PEM file; None: the key is in the instance's dkim_keys


def parse_keys(
    secret: SecretStr | None,
    *,
    instance: str = "providers.smtp",
    variable: str = _KEYS_VARIABLE,
) -> dict[str, str]:
    """The `dkim_keys` secret of the SMTP instance written `instance` as {domain: PEM};
    ConfigError naming the instance's key and `variable` if unreadable."""
    if secret is None:
        return {}
    try:
        data: Any = yaml.safe_load(secret.get_secret_value())
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        # Never quote the value: it holds private keys.
        raise ConfigError(
            f"{instance}.dkim_keys ({variable}): must be a YAML or JSON mapping of"
            ' domain to PEM private key, e.g. {"example.com": "-----BEGIN PRIVATE KEY-----\\n..."}'
        )
    return {domain.lower().rstrip("."): key for domain, key in data.items()}


def key_problems(
    domains: list[DkimDomainSettings],
    secret: SecretStr | None,
    *,
    instance: str = "providers.smtp",
    variable: str = _KEYS_VARIABLE,
) -> list[str]:
    """What is wrong with the DKIM configuration of the SMTP instance written `instance`
    (`providers[3] (relay-b)`) whose keys are in `variable`, without reading any key file."""
    try:
        keys = parse_keys(secret, instance=instance, variable=variable)
    except ConfigError as exc:
        return [str(exc)]
    problems = []
    seen: set[str] = set()
    for number, entry in enumerate(domains):
        where = f"{instance}.dkim.{number}"
        domain = entry.domain.lower().rstrip(".")
        if not domain.isascii():
            problems.append(f"{where}.domain: write {domain} in its IDNA (xn--) form")
        if domain in seen:
            problems.append(f"{where}.domain: {domain} is listed twice")
        seen.add(domain)
        if entry.key_file is None and domain not in keys:
            problems.append(
                f"{where}: missing secret: no key_file, so set {variable} with a key for {domain}"
            )
        elif entry.key_file is not None and domain in keys:
            problems.append(
                f"{where}: {domain} has both a key_file and a key in {variable}; keep one"
            )
    return problems


def _read_key(
    entry: DkimDomainSettings, keys: dict[str, str], *, where: str, variable: str
) -> bytes:
    """The PEM key of `entry`, the `where` (`providers[3] (relay-b).dkim.0`) of an instance whose
    keys are in `variable`; ConfigError naming both when it cannot be used."""
    domain = entry.domain.lower().rstrip(".")
    if entry.key_file is None:
        text = keys.get(domain)
        source = f"{where} ({variable}[{domain}])"
        if text is None:
            raise ConfigError(f"{source}: missing: no DKIM key for {domain}")
    else:
        source = f"{where}.key_file {entry.key_file}"
        try:
            with open(entry.key_file, encoding="ascii") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read the DKIM key: {exc}") from None
    if "\n" not in text.strip():
        # One line, as environment variables often carry it: "\n" written out as two characters.
        text = text.replace("\\n", "\n")
    # dkimpy's PEM reader wants LF line ends and the armour lines.
    pem = text.replace("\r\n", "\n").strip().encode("ascii", errors="replace") + b"\n"
    # dkimpy (and the DNS resolver it brings) is imported where keys are used, not by
    # gomailpy.config.settings, which imports this module for `DkimDomainSettings`.
    import dkim.crypto

    try:
        dkim.crypto.parse_pem_private_key(pem)
    except dkim.crypto.UnparsableKeyError as exc:
        raise ConfigError(f"{source}: not a PEM RSA private key ({exc})") from None
    return pem


class DkimSigner:
    """Signs messages for the configured domains (see the module docstring); no I/O once built."""

    def __init__(self, keys: dict[str, tuple[bytes, bytes]]) -> None:
        self._keys = keys  # domain -> (selector, PEM key)

    @classmethod
    def from_settings(
        cls,
        domains: list[DkimDomainSettings],
        secret: SecretStr | None,
        *,
        instance: str = "providers.smtp",
        variable: str = _KEYS_VARIABLE,
    ) -> DkimSigner:
        """Read and check every key (files, the secret) of the SMTP instance written
        `instance` (`providers[3] (relay-b)`, as check-config writes it) whose keys are in
        `variable`; ConfigError naming that instance's key when something is wrong."""
        problems = key_problems(domains, secret, instance=instance, variable=variable)
        if problems:
            raise ConfigError("\n".join(problems), problems=problems)
        keys = parse_keys(secret, instance=instance, variable=variable)
        return cls(
            {
                entry.domain.lower().rstrip("."): (
                    entry.selector.encode("ascii"),
                    _read_key(entry, keys, where=f"{instance}.dkim.{number}", variable=variable),
                )
                for number, entry in enumerate(domains)
            }
        )

    @property
    def domains(self) -> list[str]:
        return sorted(self._keys)

    def signing_domain(self, sender: str) -> str | None:
        """The configured domain that signs for `sender`: its own, else its closest parent."""
        labels = sender.rpartition("@")[2].lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            candidate = ".".join(labels[start:])
            if candidate in self._keys:
                return candidate
        return None

    def sign(self, message: bytes, sender: str) -> bytes:
        """`message` with a DKIM-Signature header on top; unchanged when no domain signs for
        `sender` (an address whose domain is in IDNA form)."""
        domain = self.signing_domain(sender)
        if domain is None:
            return message
        import dkim

        selector, key = self._keys[domain]
        signer = dkim.DKIM(message)
        signer.should_sign.update(_EXTRA_HEADERS)
        signature: bytes = signer.sign(
            selector, domain.encode("ascii"), key, canonicalize=(b"relaxed", b"relaxed")
        )
        return signature + message

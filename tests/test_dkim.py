"""DKIM signing of SMTP mail (gomailpy.email.dkim): keys from a file or the environment, never
the YAML; what is signed verifies with dkimpy against the public key published in DNS (here a
`dnsfunc` that answers for the selector's TXT record)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from gomailpy.config.settings import Settings, load_settings
from gomailpy.email.dkim import DkimDomainSettings, DkimSigner
from gomailpy.email.mime import build_message, direct_bytes, message_bytes, render_bytes
from gomailpy.errors import ConfigError
from gomailpy.providers import open_providers
from gomailpy.providers.smtp import SmtpProvider
from gomailpy_local.standins import SmtpStandIn
from tests.support import make_envelope

Dns = Callable[..., bytes | None]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def dns_for(key: rsa.RSAPrivateKey, record: str = "s1._domainkey.example.com.") -> Dns:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name.decode() == record else None

    return lookup


def signer_for(key: rsa.RSAPrivateKey, domain: str = "example.com") -> DkimSigner:
    entry = DkimDomainSettings(domain=domain, selector="s1")
    return DkimSigner.from_settings([entry], SecretStr(json.dumps({domain: pem(key)})))


def message() -> bytes:
    return message_bytes(build_message(make_envelope(0, fromEmail="news@example.com")))


@pytest.mark.parametrize(
    "fields",
    [
        {},  # one text part
        # two parts, folded address and subject lines, a custom header: all written directly
        {
            "html": "<p>Hello</p>",
            "cc": [f"cc{n}@example.org" for n in range(6)],
            "subject": " ".join(["a long subject"] * 10),
            "headers": {"List-Unsubscribe": "<https://example.com/u/1>"},
        },
        {"body": "Grüße " * 40},  # non-ASCII body: quoted-printable, directly
    ],
)
def test_the_directly_written_message_verifies(
    key: rsa.RSAPrivateKey, fields: dict[str, object]
) -> None:
    envelope = make_envelope(0, fromEmail="news@example.com", **fields)
    assert direct_bytes(envelope) is not None  # not the email package's build
    data = render_bytes(envelope)
    assert dkim.verify(signer_for(key).sign(data, "news@example.com"), dnsfunc=dns_for(key))


def test_signed_message_verifies_against_the_public_key(key: rsa.RSAPrivateKey) -> None:
    signed = signer_for(key).sign(message(), "news@example.com")
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com")
    assert b" s=s1;" in signed
    assert dkim.verify(signed, dnsfunc=dns_for(key))


def test_a_changed_body_or_subject_fails_verification(key: rsa.RSAPrivateKey) -> None:
    signed = signer_for(key).sign(message(), "news@example.com")
    assert not dkim.verify(
        signed.replace(b"Body of email 0", b"Body of email 1"), dnsfunc=dns_for(key)
    )
    assert not dkim.verify(
        signed.replace(b"Subject: Hello 0", b"Subject: Hello 1"), dnsfunc=dns_for(key)
    )


def test_a_subdomain_is_signed_by_its_parent_and_others_not_at_all(key: rsa.RSAPrivateKey) -> None:
    signer = signer_for(key)
    assert signer.signing_domain("a@mail.example.com") == "example.com"
    assert signer.signing_domain("a@EXAMPLE.COM") == "example.com"
    assert signer.signing_domain("a@example.org") is None
    assert signer.signing_domain("a@notexample.com") is None
    assert signer.sign(b"From: a@example.org\r\n\r\nhi\r\n", "a@example.org") == (
        b"From: a@example.org\r\n\r\nhi\r\n"
    )


def test_a_key_written_on_one_line_with_backslash_n(key: rsa.RSAPrivateKey) -> None:
    one_line = pem(key).strip().replace("\n", "\\n")  # as in a .env file
    signer = DkimSigner.from_settings(
        [DkimDomainSettings(domain="example.com", selector="s1")],
        SecretStr(f"example.com: '{one_line}'"),  # YAML, single-quoted: no escapes
    )
    assert dkim.verify(signer.sign(message(), "news@example.com"), dnsfunc=dns_for(key))


def test_key_from_a_file(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "example.com.pem"
    path.write_text(pem(key).replace("\n", "\r\n"))  # CRLF, as from some editors
    signer = DkimSigner.from_settings(
        [DkimDomainSettings(domain="example.com", selector="s1", key_file=str(path))], None
    )
    assert dkim.verify(signer.sign(message(), "news@example.com"), dnsfunc=dns_for(key))


@pytest.mark.parametrize(
    ("entry", "secret", "problem"),
    [
        ({"key_file": "/nonexistent/key.pem"}, None, "cannot read the DKIM key"),
        ({}, None, "missing secret: no key_file, so set GOMAILPY_PROVIDERS__SMTP__DKIM_KEYS"),
        ({}, "just text", "must be a YAML or JSON mapping"),
        ({}, '{"example.com": "not a key"}', "not a PEM RSA private key"),
    ],
)
def test_unusable_keys_are_config_errors(
    entry: dict[str, str], secret: str | None, problem: str
) -> None:
    domains = [DkimDomainSettings(domain="example.com", selector="s1", **entry)]
    with pytest.raises(ConfigError, match=problem) as caught:
        DkimSigner.from_settings(domains, SecretStr(secret) if secret else None)
    assert secret is None or secret not in str(caught.value)  # a key is never echoed


def test_settings_take_the_key_from_the_environment_only(
    key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    config = tmp_path / "gomailpy.yaml"
    config.write_text(
        "providers:\n  smtp:\n    enabled: true\n    dkim:\n"
        "      - {domain: example.com, selector: s1}\n"
    )
    with pytest.raises(ConfigError, match="dkim.0: missing secret"):
        load_settings(config, env={})
    variable = "GOMAILPY_PROVIDERS__SMTP__DKIM_KEYS"
    settings = load_settings(config, env={variable: json.dumps({"example.com": pem(key)})})
    smtp = settings.providers.smtp
    assert smtp.dkim_keys is not None and "PRIVATE KEY" in smtp.dkim_keys.get_secret_value()

    config.write_text(config.read_text() + "    dkim_keys: '{example.com: x}'\n")
    with pytest.raises(ConfigError, match="secrets are read from the environment only"):
        load_settings(config, env={})


async def test_the_smtp_provider_sends_signed_mail(key: rsa.RSAPrivateKey) -> None:
    settings = load_settings(None, env={})
    async with SmtpStandIn() as standin, AsyncExitStack() as stack:
        smtp = settings.providers.smtp.model_copy(
            update={
                "enabled": True,
                "port": standin.port,
                "dkim": [DkimDomainSettings(domain="example.com", selector="s1")],
                "dkim_keys": SecretStr(json.dumps({"example.com": pem(key)})),
            }
        )
        provider = await stack.enter_async_context(SmtpProvider(smtp))
        result = await provider.send(make_envelope(0, fromEmail="news@example.com"))
    assert result.ok, result.reason
    [received] = standin.messages
    assert received.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.data, dnsfunc=dns_for(key))


async def test_dkim_errors_at_send_time_name_the_instance_as_check_config_does(
    tmp_path: Path,
) -> None:
    """A key file that went missing after check-config (or a key that cannot be read) fails
    when the pipeline builds its providers: the error names that relay, not `providers.smtp`."""
    missing = str(tmp_path / "gone.pem")
    settings = Settings.model_validate(
        {
            "providers": [
                {"name": "relay-a", "kind": "smtp"},
                {
                    "name": "relay-b",
                    "kind": "smtp",
                    "dkim": [{"domain": "example.com", "selector": "s1", "key_file": missing}],
                },
            ]
        }
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError) as caught:
            await open_providers(stack, settings)
    assert str(caught.value).startswith(
        f"providers[1] (relay-b).dkim.0.key_file {missing}: cannot read the DKIM key"
    )
    bad_secret = settings.providers["relay-b"].model_copy(
        update={
            "dkim": [DkimDomainSettings(domain="example.com", selector="s1")],
            "dkim_keys": SecretStr("just text"),
        }
    )
    with pytest.raises(ConfigError) as caught:
        SmtpProvider(bad_secret)  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        "providers (relay-b).dkim_keys (GOMAILPY_PROVIDERS__RELAY_B__DKIM_KEYS): must be"
    )

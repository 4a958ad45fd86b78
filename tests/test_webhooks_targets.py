"""Webhook targets (gomailpy.webhooks.targets): a corpus of hostile URLs, every one refused at
config time, by `gomail webhooks add` (exit 2) and at delivery; names whose DNS answers are not
globally routable refused (a resolver stub stands in for DNS); hosts normalised here, and the
request sent to the host that was checked."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from click.testing import CliRunner

from gomailpy.config.settings import load_settings
from gomailpy.config.webhook_targets import TargetRefusedError, checked_target, static_problem
from gomailpy.config.webhooks import WebhookEndpointSettings, WebhooksSettings
from gomailpy.errors import ConfigError, GomailError
from gomailpy.webhooks import targets
from gomailpy.webhooks.attempt import SigningKeys, attempt, open_webhook_session
from gomailpy.webhooks.outbox import Delivery
from gomailpy.webhooks.signing import new_secret
from gomailpy.webhooks.targets import GuardedResolver
from gomailpy_cli.main import cli
from tests.support import StartServer

# (URL, what the refusal says): every form of the same few addresses, and URLs that would
# make two parsers disagree about the host.
HOSTILE = [
    # loopback, however it is written
    ("http://127.0.0.1/hook", "a loopback address (127.0.0.1)"),
    ("http://2130706433/", "a loopback address (127.0.0.1)"),  # decimal
    ("http://0177.0.0.1/", "a loopback address (127.0.0.1)"),  # octal
    ("http://0x7f.1/", "a loopback address (127.0.0.1)"),  # hex, short
    ("http://0x7F000001/", "a loopback address (127.0.0.1)"),
    ("http://017700000001/", "a loopback address (127.0.0.1)"),
    ("http://127.1/", "a loopback address (127.0.0.1)"),
    ("http://127.0.1/", "a loopback address (127.0.0.1)"),
    ("http://127.0.0.1./", "a loopback address (127.0.0.1)"),  # trailing dot
    ("http://%31%32%37.0.0.1/", "a loopback address (127.0.0.1)"),  # percent-encoded
    ("http://１２７。０。０。１/", "a loopback address (127.0.0.1)"),  # fullwidth, IDNA dots
    ("http://[::1]/", "a loopback address (::1)"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "a loopback address (::1)"),
    ("http://[::1%25lo]/", "a loopback address (::1)"),  # zone id
    ("http://LOCALHOST:9000/", "this machine (localhost)"),
    ("http://localhost./", "this machine (localhost)"),
    ("http://lo%63alhost/", "this machine (localhost)"),
    ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "this machine (localhost)"),  # IDNA maps it to localhost
    ("http://app.localhost/", "this machine (app.localhost)"),
    # private, link-local
    ("http://10.0.0.7/", "a private address (10.0.0.7)"),
    ("http://172.16.5.4/", "a private address (172.16.5.4)"),
    ("http://192.168.1.1/", "a private address (192.168.1.1)"),
    ("http://3232235777/", "a private address (192.168.1.1)"),
    ("http://0xc0.0xa8.1.1/", "a private address (192.168.1.1)"),
    ("http://[fd12:3456::1]/", "a unique-local (private) address"),
    ("http://169.254.1.1/", "a link-local address"),
    ("http://[fe80::1%25eth0]/", "a link-local address (fe80::1)"),
    ("http://[FE80::1]/", "a link-local address (fe80::1)"),
    # cloud metadata services
    ("http://169.254.169.254/latest/meta-data/", "the cloud metadata service"),
    ("http://2852039166/", "the cloud metadata service"),
    ("http://0xa9.254.0xa9.0376/", "the cloud metadata service"),
    ("http://[fd00:ec2::254]/", "the cloud metadata service (AWS, IPv6)"),
    ("http://169.254.170.2/v2/credentials", "the cloud metadata service (AWS ECS"),
    ("http://168.63.129.16/", "the cloud metadata service (Azure"),
    ("http://100.100.100.200/", "the cloud metadata service (Alibaba Cloud)"),
    ("http://192.0.0.192/", "the cloud metadata service (Oracle Cloud)"),
    ("http://[fd20:ce::254]/", "the cloud metadata service (GCP, IPv6)"),
    ("http://metadata.google.internal/computeMetadata/v1/", "the cloud metadata service (GCP)"),
    ("http://METADATA.GOOGLE.INTERNAL./", "the cloud metadata service (GCP)"),
    # other special-purpose blocks (IANA registries)
    ("http://0.0.0.0/", "'this network' (0.0.0.0/8)"),
    ("http://0/", "'this network' (0.0.0.0/8)"),
    ("http://0.1.2.3/", "'this network' (0.0.0.0/8)"),
    ("http://100.64.0.1/", "a shared (carrier-grade NAT) address"),
    ("http://100.127.255.254/", "a shared (carrier-grade NAT) address"),
    ("http://192.0.0.8/", "an IETF protocol assignment (192.0.0.0/24)"),
    ("http://192.0.0.9/", "an IETF protocol assignment (192.0.0.0/24)"),
    ("http://192.0.2.10/", "a documentation address"),
    ("http://198.18.0.1/", "a benchmarking address (198.18.0.0/15)"),
    ("http://198.19.255.1/", "a benchmarking address (198.18.0.0/15)"),
    ("http://203.0.113.5/", "a documentation address"),
    ("http://192.88.99.1/", "the deprecated 6to4 relay anycast"),
    ("http://224.0.0.251/", "a multicast address"),
    ("http://239.255.255.250/", "a multicast address"),
    ("http://240.0.0.1/", "a reserved address (240.0.0.0/4"),
    ("http://255.255.255.255/", "a reserved address (240.0.0.0/4"),
    ("http://[ff02::1]/", "a multicast address (ff02::1)"),
    ("http://[::]/", "the unspecified address (::)"),
    ("http://[2001:db8::1]/", "a documentation address"),
    ("http://[100::1]/", "a discard-only address"),
    ("http://[fec0::1]/", "a site-local address"),
    ("http://[4000::1]/", "a reserved address (not IPv6 global unicast"),
    # IPv6 carrying an IPv4 address: judged by that address
    ("http://[::ffff:127.0.0.1]/", "a loopback address: 127.0.0.1, as an IPv4-mapped"),
    ("http://[::ffff:a9fe:a9fe]/", "the cloud metadata service (AWS, GCP"),
    ("http://[::ffff:10.0.0.1]/", "a private address: 10.0.0.1, as an IPv4-mapped"),
    ("http://[::127.0.0.1]/", "an IPv4-compatible IPv6 address (deprecated, ::/96) of 127.0.0.1"),
    ("http://[64:ff9b::10.0.0.1]/", "a private address: 10.0.0.1, as a NAT64 address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "the cloud metadata service"),
    ("http://[64:ff9b:1::a00:1]/", "a local-use IPv4/IPv6 translation address"),
    ("http://[2002:7f00:1::]/", "a loopback address: 127.0.0.1, as a 6to4 address"),
    ("http://[2002:c0a8:101::1]/", "a private address: 192.168.1.1, as a 6to4 address"),
    (
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "a Teredo address (2001::/32) of client 127.0.0.1",
    ),
    (
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "a Teredo address (2001::/32) of client 192.0.2.45",
    ),
    # names that never are on the internet
    ("http://intranet/", "a name without a domain"),
    ("http://printer.local/", "a local-only name (.local)"),
    ("http://db.internal/", "a local-only name (.internal)"),
    ("http://router.home.arpa/", "a local-only name (.home.arpa)"),
    # parser confusion: refused rather than guessed
    ("http://evil.example\\@127.0.0.1/", "a backslash"),
    ("http://user:pw@hooks.example.com/", "credentials in the URL"),
    ("http://hooks.example.com@127.0.0.1/", "credentials in the URL"),
    ("http://[::1]hooks.example.com/", "brackets do not enclose it"),
    ("http://127.0.0.1[aa::ff]/", "must be in brackets"),
    ("http://::1/", "must be in brackets"),
    ("http://[127.0.0.1]/", "is not an IPv6 address"),
    ("http://1.2.3.4.5/", "ends in a number but is no IPv4 address"),
    ("http://256.0.0.1/", "ends in a number but is no IPv4 address"),
    ("http://08.0.0.1/", "ends in a number but is no IPv4 address"),
    ("http://hooks.example.123/", "ends in a number but is no IPv4 address"),
    ("http://%2F%2F127.0.0.1/", "is not a valid host name"),
    ("http://hooks.example.com%00.evil/", "is not a valid host name"),
    ("http://a..example.com/", "is not a valid host name"),
    ("http://hooks.example.com:0/", "the port is not a number"),
    ("http://hooks.example.com:99999/", "the port is not a number"),
    ("http://hooks.example.com: 80/", "whitespace"),
    ("http://hooks .example.com/", "whitespace"),
    ("http://hooks.example.com\r\nX: y/", "control characters"),
    ("ftp://hooks.example.com/", "must be an http:// or https:// URL"),
    ("http:/hooks.example.com/", "must be an http:// or https:// URL"),
    ("http:///hook", "must be an http:// or https:// URL with a host"),
    ("file:///etc/passwd", "must be an http:// or https:// URL"),
]

# What a name may resolve to at delivery time, none of it allowed: (address, reason).
HOSTILE_ANSWERS = [
    ("127.0.0.1", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.1.2.3", "a private address"),
    ("192.168.0.10", "a private address"),
    ("169.254.169.254", "the cloud metadata service"),
    ("fd00:ec2::254", "the cloud metadata service"),
    ("168.63.129.16", "the cloud metadata service"),
    ("100.100.100.200", "the cloud metadata service"),
    ("192.0.0.192", "the cloud metadata service"),
    ("100.64.1.1", "a shared (carrier-grade NAT) address"),
    ("0.0.0.0", "'this network'"),
    ("198.18.0.1", "a benchmarking address"),
    ("fe80::1%eth0", "a link-local address"),
    ("::ffff:10.0.0.1", "a private address: 10.0.0.1, as an IPv4-mapped"),
    ("64:ff9b::a9fe:a9fe", "the cloud metadata service"),
    ("2002:a00:1::1", "a private address: 10.0.0.1, as a 6to4 address"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "a Teredo address"),
]

# Allowed URLs and what is requested for them.
PUBLIC = [
    ("https://hooks.example.com/in", "https://hooks.example.com/in"),
    ("HTTPS://Hooks.Example.COM.:443/in?x=1#part", "https://hooks.example.com/in?x=1"),
    ("https://bücher.example/hook", "https://xn--bcher-kva.example/hook"),
    ("https://hooks.example.com:8443", "https://hooks.example.com:8443/"),
    ("http://93.184.216.34:8080/h", "http://93.184.216.34:8080/h"),
    ("http://1572395042/h", "http://93.184.216.34/h"),
    ("http://0x5d.0xb8.0xd8.0x22/", "http://93.184.216.34/"),
    (
        "http://[2606:2800:220:1:248:1893:25C8:1946]/",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/",
    ),
    ("http://[::ffff:93.184.216.34]/", "http://[::ffff:5db8:d822]/"),
    ("http://[2002:5db8:d822::1]/", "http://[2002:5db8:d822::1]/"),
    ("http://[64:ff9b::93.184.216.34]/", "http://[64:ff9b::5db8:d822]/"),
]

ENV = {"GOMAILPY_WEBHOOKS__SECRETS": json.dumps({"app": new_secret()})}


class Answering(AbstractResolver):
    """DNS as a test wants it: every name resolves to `addresses`; `asked` records lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


def config(tmp_path: Path, url: str, *, loopback: bool = False) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        "webhooks:\n  enabled: true\n"
        f"  allow_loopback_targets: {'true' if loopback else 'false'}\n"
        f"  endpoints:\n    - {{name: app, url: {json.dumps(url)}}}\n"
    )
    return path


async def deliver(url: str, resolver: AbstractResolver, *, loopback: bool = False) -> str:
    """One attempt to `url`; its verdict and problem."""
    webhooks = WebhooksSettings.model_validate(
        {
            "allow_loopback_targets": loopback,
            "endpoints": [{"name": "app", "url": "https://hooks.example.com/"}],
            "secrets": ENV["GOMAILPY_WEBHOOKS__SECRETS"],
        }
    )
    # The endpoint as a node whose config was checked by an older version would have it.
    endpoint = WebhookEndpointSettings(name="app", url=url)
    delivery = Delivery("app", "msg_1", '{"type": "webhook.test"}', 0.0)
    async with open_webhook_session(webhooks, resolver=resolver) as session:
        answer = await attempt(session, webhooks, endpoint, delivery, SigningKeys(webhooks))
    return f"{answer.verdict}: {answer.problem}"


# -- the hostile corpus, refused everywhere --------------------------------------------------


@pytest.mark.parametrize(("url", "why"), HOSTILE)
def test_hostile_urls_are_refused_at_config_time(tmp_path: Path, url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, url), env=ENV)
    message = str(caught.value)
    assert "endpoints.0 (app).url" in message and why in message, message


@pytest.mark.parametrize(("url", "why"), HOSTILE)
def test_hostile_urls_are_refused_by_gomail_webhooks_add(url: str, why: str) -> None:
    done = CliRunner().invoke(cli, ["webhooks", "add", "app", url])
    assert done.exit_code == 2, done.output
    assert "refused: " in done.output and why in done.output, done.output
    assert "whsec_" not in done.output


@pytest.mark.parametrize(("url", "why"), HOSTILE)
async def test_hostile_urls_are_refused_at_delivery_without_a_connection(
    url: str, why: str
) -> None:
    dns = Answering("93.184.216.34")
    outcome = await deliver(url, dns)
    assert outcome.startswith("refused: target refused: ") and why in outcome, outcome
    assert dns.asked == []  # refused before DNS, so before any connection


@pytest.mark.parametrize(("address", "why"), HOSTILE_ANSWERS)
async def test_a_name_answering_with_a_hostile_address_is_refused(address: str, why: str) -> None:
    for answer in ([address], ["93.184.216.34", address]):  # every address is checked
        resolver = GuardedResolver(allow_loopback=False, inner=Answering(*answer))
        with pytest.raises(TargetRefusedError, match="resolves to") as caught:
            await resolver.resolve("hooks.example.com", 443)
        assert why in str(caught.value)
        assert isinstance(caught.value, GomailError) and isinstance(caught.value, OSError)
        outcome = await deliver("https://hooks.example.com/in", Answering(*answer))
        assert outcome.startswith("refused: target refused: hooks.example.com resolves to")
        assert why in outcome, outcome


@pytest.mark.parametrize(("address", "why"), HOSTILE_ANSWERS)
def test_add_refuses_a_name_that_resolves_to_a_hostile_address(
    monkeypatch: pytest.MonkeyPatch, address: str, why: str
) -> None:
    monkeypatch.setattr(targets, "DefaultResolver", lambda: Answering("93.184.216.34", address))
    done = CliRunner().invoke(cli, ["webhooks", "add", "app", "https://hooks.example.com/in"])
    assert done.exit_code == 2, done.output
    assert "refused: 'https://hooks.example.com/in': hooks.example.com resolves to" in done.output
    assert why in done.output


# -- what is allowed -------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "requested"), PUBLIC)
def test_public_targets_pass_and_are_requested_in_canonical_form(
    tmp_path: Path, url: str, requested: str
) -> None:
    assert static_problem(url, allow_loopback=False) is None
    assert checked_target(url, allow_loopback=False).url == requested
    assert load_settings(config(tmp_path, url), env=ENV).webhooks.endpoints[0].url == url


def test_add_prints_the_canonical_url_of_a_public_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "DefaultResolver", lambda: Answering("93.184.216.34"))
    done = CliRunner().invoke(cli, ["webhooks", "add", "app", "HTTPS://Hooks.Example.COM./in"])
    assert done.exit_code == 0, done.output
    assert '"url": "https://hooks.example.com/in"' in done.output


def test_loopback_only_when_configured_for_local_testing(tmp_path: Path) -> None:
    assert WebhooksSettings().allow_loopback_targets is False
    for url in ("http://127.0.0.1:8080/h", "http://[::1]/", "http://localhost/", "http://0x7f.1/"):
        assert static_problem(url, allow_loopback=False) is not None
        assert static_problem(url, allow_loopback=True) is None, url
        assert load_settings(config(tmp_path, url, loopback=True), env=ENV)
    # ... and nothing else: private, metadata, loopback in disguise stay refused.
    for url in (
        "http://10.0.0.7/",
        "http://169.254.169.254/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0:8080/",
        "http://[2002:7f00:1::]/",
    ):
        assert static_problem(url, allow_loopback=True) is not None, url
        with pytest.raises(ConfigError):
            load_settings(config(tmp_path, url, loopback=True), env=ENV)


def test_the_former_allow_private_targets_is_refused_when_true(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("webhooks:\n  allow_private_targets: true\n")
    with pytest.raises(ConfigError, match="allow_private_targets is gone"):
        load_settings(path, env={})
    path.write_text("webhooks:\n  allow_private_targets: false\n")  # what it meant: no change
    assert load_settings(path, env={}).webhooks.allow_loopback_targets is False


async def test_the_request_goes_to_the_host_that_was_checked(start_server: StartServer) -> None:
    hosts: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hosts.append(request.host)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", record)
    port = (await start_server(app)).port
    # A short hex form of 127.0.0.1: requested as 127.0.0.1, not as whatever aiohttp reads.
    outcome = await deliver(f"http://0x7f.1:{port}/hook", Answering(), loopback=True)
    assert outcome == "delivered: " and hosts == [f"127.0.0.1:{port}"]
    # A name: resolved once, by the guarded resolver, whose answer is what is connected to.
    dns = Answering("127.0.0.1")
    outcome = await deliver(f"http://Hooks.Example.COM.:{port}/hook", dns, loopback=True)
    assert outcome == "delivered: " and dns.asked == ["hooks.example.com"]
    assert hosts[-1] == f"hooks.example.com:{port}"

"""Open and click tracking: link rewriting (pure), /t/o and /t/c on the real API (events in
batches on LocalStack's SQS), and the SMTP path's captured message: rewritten links, a pixel, and
a DKIM signature covering both List-Unsubscribe headers."""

from __future__ import annotations

import json
import re
import time
from contextlib import AsyncExitStack
from email import message_from_bytes

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from gomailpy.bulk.headers import with_unsubscribe
from gomailpy.bulk.links import GIF, tracked_html
from gomailpy.bulk.machine import is_machine
from gomailpy.bulk.tokens import Kind, Link, sign, verify
from gomailpy.config.bulk import BulkSettings
from gomailpy.config.settings import load_settings
from gomailpy.email.bulk.options import BulkOptions
from gomailpy.email.dkim import DkimDomainSettings
from gomailpy.events import EventType
from gomailpy.metrics import sample
from gomailpy.providers.smtp import SmtpProvider
from gomailpy_local.standins import SmtpStandIn
from tests.bulk_support import PUBLIC, SECRET, bulk_settings, path_of, queued_events
from tests.support import api_client, make_envelope, make_settings
from tests.test_dkim import dns_for, pem

KEY = SECRET.encode()
HTML = (
    '<html><body><a href="https://shop.example/a?x=1&amp;y=2">A</a>'
    "<a href='mailto:x@example.org'>M</a><A HREF=http://b.example/>B</A></body></html>"
)


def test_links_are_rewritten_and_a_pixel_added() -> None:
    seen: list[str] = []

    def link_for(url: str) -> str:
        seen.append(url)
        return f"{PUBLIC}/t/c/{len(seen)}"

    out = tracked_html(HTML, link_for, f"{PUBLIC}/t/o/p")
    assert seen == ["https://shop.example/a?x=1&y=2", "http://b.example/"]
    assert "mailto:x@example.org" in out and "shop.example" not in out
    assert out.index('<img src="https://mail.example.com/t/o/p"') < out.index("</body>")


def test_machine_hits() -> None:
    assert is_machine("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", 0, 1000, 10)
    assert is_machine("Mozilla/5.0", 0, 1000, 10)
    assert is_machine("Mozilla/5.0 (Macintosh) Safari/605", 1000, 1003, 10)  # a prefetch
    assert not is_machine("Mozilla/5.0 (Macintosh) Safari/605", 1000, 1300, 10)


async def test_clicks_redirect_only_where_the_email_pointed(sqs_endpoint: str) -> None:
    settings = await bulk_settings(sqs_endpoint)
    sent = time.time() - 3600
    click = sign(
        Link(Kind.CLICK, "m-1", "ann@example.org", url="https://shop.example/a"), KEY, sent
    )
    pixel = sign(Link(Kind.OPEN, "m-1", "ann@example.org"), KEY, sent)
    forged = sign(
        Link(Kind.CLICK, "m-1", "ann@example.org", url="https://evil.example"), b"x" * 40, sent
    )
    agent = {"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit Safari/605"}
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        answer = await client.get(f"/t/c/{click}", allow_redirects=False, headers=agent)
        assert answer.status == 302 and answer.headers["Location"] == "https://shop.example/a"
        opened = await client.get(f"/t/o/{pixel}", headers=agent)
        assert opened.status == 200 and await opened.read() == GIF
        proxy = {"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
        assert (await client.get(f"/t/o/{pixel}", headers=proxy)).status == 200
        refused = await client.get(f"/t/c/{forged}", allow_redirects=False)
        assert refused.status == 403 and "Location" not in refused.headers
        # an open token is no click token: no redirect anywhere
        assert (await client.get(f"/t/c/{pixel}", allow_redirects=False)).status == 403
    events = await queued_events(settings)
    kinds = sorted((e.type.value, e.raw["machine"]) for e in events)
    assert kinds == [("clicked", False), ("opened", False), ("opened", True)]
    [clicked] = [e for e in events if e.type is EventType.CLICKED]
    assert clicked.raw["url"] == "https://shop.example/a" and "Safari" in clicked.raw["userAgent"]


async def test_the_smtp_path_rewrites_links_adds_a_pixel_and_signs_the_headers() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = load_settings(None, env={})
    bulk = BulkSettings(secret=SecretStr(SECRET), public_url=PUBLIC)
    options = BulkOptions(unsubscribe=True, group=3, opens=True, clicks=True)
    envelope = make_envelope(0, fromEmail="news@example.com", html=HTML)
    envelope = envelope.model_copy(update={"bulk": options})
    envelope = with_unsubscribe(envelope, bulk, "bounces.example.com", time.time())
    async with SmtpStandIn() as standin, AsyncExitStack() as stack:
        smtp = settings.providers.smtp.model_copy(
            update={
                "enabled": True,
                "port": standin.port,
                "dkim": [DkimDomainSettings(domain="example.com", selector="s1")],
                "dkim_keys": SecretStr(json.dumps({"example.com": pem(key)})),
            }
        )
        provider = await stack.enter_async_context(SmtpProvider(smtp, None, bulk))
        result = await provider.send(envelope)
    assert result.ok, result.reason
    [received] = standin.messages
    assert dkim.verify(received.data, dnsfunc=dns_for(key))
    message = message_from_bytes(received.data)
    signed = re.search(r"h=([^;]+)", message["DKIM-Signature"].replace("\r\n", "").replace(" ", ""))
    assert signed is not None
    names = [n.lower() for n in signed.group(1).split(":")]
    assert "list-unsubscribe" in names and "list-unsubscribe-post" in names
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    body = html.get_payload(decode=True).decode()
    links = re.findall(r'href="([^"]+)"', body, re.IGNORECASE)
    assert len(links) == 2 and all(link.startswith(f"{PUBLIC}/t/c/") for link in links)
    assert "href='mailto:x@example.org'" in body
    token = path_of(links[0]).removeprefix("/t/c/")
    found = verify(token, KEY, Kind.CLICK, ttl_s=3600, now=time.time())
    assert found.url == "https://shop.example/a?x=1&y=2" and found.message_id == envelope.id
    assert f'<img src="{PUBLIC}/t/o/' in body


async def test_the_fast_lane_counts_hits_answers_errors_as_json_and_records_no_bad_hit(
    sqs_endpoint: str,
) -> None:
    # /t/o and /t/c go past the other middlewares (api.middleware.fast_lane_middleware): their
    # answers are still counted by route and status, and errors are still JSON.
    settings = await bulk_settings(sqs_endpoint)
    off = make_settings("http://127.0.0.1:1", api={"serve_webclient": False})
    pixel = sign(Link(Kind.OPEN, "m-1", "ann@example.org"), KEY, time.time() - 3600)
    click = sign(Link(Kind.CLICK, "m-1", "ann@example.org", url="https://shop.example/"), KEY, 0)
    route = {"route": "/t/o/{token}", "method": "GET"}

    def counted(status: int, path: str = "/t/o/{token}") -> float:
        labels = {**route, "route": path, "status": str(status)}
        return sample("gomailpy_http_requests_total", labels)

    before = {status: counted(status) for status in (200, 403, 404)}
    expired_before = counted(410, "/t/c/{token}")
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        assert (await client.get(f"/t/o/{pixel}")).status == 200
        forged = await client.get(f"/t/o/{pixel[:-3]}abc", headers={"Origin": "https://x.example"})
        assert forged.status == 403
        assert "errors" in await forged.json()
        assert "Access-Control-Allow-Origin" not in forged.headers
        expired = await client.get(f"/t/c/{click}", allow_redirects=False)
        assert expired.status == 410 and "Location" not in expired.headers
        off_client = await api_client(stack, off)
        nothing = await off_client.get(f"/t/o/{pixel}")
        assert nothing.status == 404 and "errors" in await nothing.json()
    assert counted(200) == before[200] + 1
    assert counted(403) == before[403] + 1
    assert counted(404) == before[404] + 1
    assert counted(410, "/t/c/{token}") == expired_before + 1
    # Tampered and expired tracking tokens recorded nothing: only the good pixel's open. (The
    # app closes while its batcher's periodic flush may be under way: that flush's events are
    # flushed again on the way out, not lost.)
    [event] = await queued_events(settings)
    assert (event.type, event.message_id) == (EventType.OPENED, "m-1")


# The direct writer (plain ASCII) and the email package (a non-ASCII subject: the fallback) must
# both write the header's long <https://…token…> as is, folded at its spaces: as RFC 2047 encoded
# words, which the email package writes for a word longer than a line, no mailbox provider
# reads it as a URL (found by the Chromium walkthrough).
@pytest.mark.parametrize("subject", ["Plain ASCII", "Caf\u00e9 news"], ids=["direct", "email-package"])
async def test_the_smtp_path_sends_list_unsubscribe_as_urls_not_encoded_words(subject: str) -> None:
    settings = load_settings(None, env={})
    bulk = BulkSettings(secret=SecretStr(SECRET), public_url=PUBLIC)
    envelope = make_envelope(0, fromEmail="news@example.com", html=HTML, subject=subject)
    envelope = envelope.model_copy(update={"bulk": BulkOptions(unsubscribe=True, group=3)})
    envelope = with_unsubscribe(envelope, bulk, "bounces.example.com", time.time())
    async with SmtpStandIn() as standin, AsyncExitStack() as stack:
        smtp = settings.providers.smtp.model_copy(update={"enabled": True, "port": standin.port})
        provider = await stack.enter_async_context(SmtpProvider(smtp, None, bulk))
        assert (await provider.send(envelope)).ok
    [received] = standin.messages
    head = received.data.split(b"\r\n\r\n", 1)[0]
    field = re.search(rb"\r\nList-Unsubscribe: (.*?)\r\n(?! )", head, re.DOTALL)
    assert field is not None
    assert b"=?" not in field.group(1) and field.group(1).startswith(b"<https://")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    # what a mailbox provider reads: the https URL (with its whole token) and the mailto
    urls = re.findall(rb"<([^>]+)>", re.sub(rb"\r\n ", b" ", field.group(1)))
    assert [u.split(b":", 1)[0] for u in urls] == [b"https", b"mailto"]
    assert urls[0].decode() == envelope.email.headers["List-Unsubscribe"].split(">", 1)[0][1:]

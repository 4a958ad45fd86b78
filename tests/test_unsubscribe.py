"""One-click unsubscribe (RFC 8058): signed tokens, the headers, and /u/{token} on the real API
(SQS on LocalStack for the events queue; the suppression list in memory)."""

from __future__ import annotations

import re
import time
from contextlib import AsyncExitStack

import pytest

from api.views.suppressions import SUPPRESSION_STORE
from gomailpy.bulk.headers import unsubscribe_headers
from gomailpy.bulk.tokens import Kind, Link, sign, sign_mailto, verify, verify_mailto
from gomailpy.email.bulk.options import BulkOptions
from gomailpy.errors import TokenError
from gomailpy.events import EventType
from tests.bulk_support import SECRET, bulk_settings, path_of, queued_events
from tests.support import api_client, make_envelope

KEY = SECRET.encode()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = "List-Unsubscribe=One-Click"


def test_a_token_carries_its_link_and_verifies_with_the_key_alone() -> None:
    link = Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org", group=7)
    token = sign(link, KEY, 1_000_000)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    found = verify(token, KEY, Kind.UNSUBSCRIBE, ttl_s=3600, now=1_000_100)
    assert (found.message_id, found.recipient, found.group) == ("m-1", "ann@example.org", 7)


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), 403),  # tampered MAC
        (lambda t: t[:10] + ("x" if t[10] != "x" else "y") + t[11:], 403),  # tampered payload
        (lambda t: sign(Link(Kind.UNSUBSCRIBE, "m", "a@b.c"), b"k" * 40, 1_000_000), 403),
        (lambda t: sign(Link(Kind.OPEN, "m-1", "ann@example.org"), KEY, 1_000_000), 403),
        (lambda t: "not!a!token", 400),
        (lambda t: "", 400),
        (lambda t: "A" * 5000, 400),
        (lambda t: "AAAA", 400),
    ],
)
def test_tampered_foreign_or_malformed_tokens_are_refused(mangle: object, status: int) -> None:
    token = sign(Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org"), KEY, 1_000_000)
    with pytest.raises(TokenError) as caught:
        verify(mangle(token), KEY, Kind.UNSUBSCRIBE, ttl_s=3600, now=1_000_100)  # type: ignore[operator]
    assert caught.value.status == status


def test_an_expired_token_is_gone() -> None:
    token = sign(Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org"), KEY, 1_000_000)
    with pytest.raises(TokenError) as caught:
        verify(token, KEY, Kind.UNSUBSCRIBE, ttl_s=3600, now=1_003_601)
    assert caught.value.status == 410


def test_a_mailto_token_fits_a_local_part_and_binds_the_recipient() -> None:
    token = sign_mailto("Ann@Example.org", 3, KEY, 1_000_000)
    assert len("unsubscribe+" + token) <= 64
    link = verify_mailto(token, "ann@example.org", KEY, ttl_s=3600, now=1_000_001)
    assert (link.recipient, link.group) == ("ann@example.org", 3)
    with pytest.raises(TokenError):
        verify_mailto(token, "mallory@example.org", KEY, ttl_s=3600, now=1_000_001)


async def test_post_one_click_suppresses_and_get_does_not(sqs_endpoint: str) -> None:
    settings = await bulk_settings(sqs_endpoint)
    envelope = make_envelope(0).model_copy(update={"bulk": BulkOptions(unsubscribe=True)})
    headers = unsubscribe_headers(envelope, settings.bulk, "bounces.example.com", time.time())
    assert headers["List-Unsubscribe-Post"] == ONE_CLICK
    url, mailto = re.findall(r"<([^>]+)>", headers["List-Unsubscribe"])
    assert mailto.startswith("mailto:unsubscribe+") and mailto.endswith("@bounces.example.com")
    recipient = envelope.email.to[0].email
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        store = client.app[SUPPRESSION_STORE]
        page = await client.get(path_of(url))
        assert page.status == 200
        html = await page.text()
        assert recipient in html and "method=post" in html and "<script" not in html
        assert await store.get(recipient) is None  # a GET never unsubscribes
        answer = await client.post(path_of(url), data=ONE_CLICK, headers=FORM)
        assert answer.status == 200, await answer.text()
        entry = await store.get(recipient)
        assert entry is not None and entry.kind == "unsubscribe" and entry.group is None
    [event] = await queued_events(settings)
    assert event.type is EventType.UNSUBSCRIBED
    assert (event.message_id, event.recipient) == (envelope.id, recipient)


async def test_bad_tokens_record_nothing(sqs_endpoint: str) -> None:
    settings = await bulk_settings(sqs_endpoint)
    good = sign(Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org"), KEY, time.time())
    old = sign(Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org"), KEY, time.time() - 400 * 86400)
    foreign = sign(Link(Kind.UNSUBSCRIBE, "m-1", "ann@example.org"), b"f" * 40, time.time())
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        for token, status in (
            (good[:-3] + "abc", 403),
            (old, 410),
            (foreign, 403),
            ("%00%0a", 400),
            ("A" * 5000, 400),
        ):
            for method in ("GET", "POST"):
                answer = await client.request(method, f"/u/{token}", data=ONE_CLICK, headers=FORM)
                assert answer.status == status, (token, method, await answer.text())
        # a valid token without the one-click body: 400, nothing done
        answer = await client.post(f"/u/{good}", data="hello=1", headers=FORM)
        assert answer.status == 400
        assert await client.app[SUPPRESSION_STORE].get("ann@example.org") is None
    assert await queued_events(settings) == []


async def test_the_page_form_posts_same_origin_and_foreign_origins_are_refused(
    sqs_endpoint: str,
) -> None:
    settings = await bulk_settings(sqs_endpoint)
    token = sign(Link(Kind.UNSUBSCRIBE, "m-2", "bob@example.org", 3, url="4"), KEY, time.time())
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        page = await client.get(f"/u/{token}")
        html = await page.text()
        assert 'value="3" checked' in html and 'value="4"' in html
        # Under `no-referrer` a browser posts the page's own form with `Origin: null`, which is
        # refused below: the button never worked (tests/test_bulk_browser.py clicks it).
        assert page.headers["Referrer-Policy"] == "same-origin"
        nowhere = await client.post(
            f"/u/{token}", data=ONE_CLICK, headers={**FORM, "Origin": "null"}
        )
        assert nowhere.status == 403
        origin = f"http://{client.host}:{client.port}"
        foreign = await client.post(
            f"/u/{token}", data=ONE_CLICK, headers={**FORM, "Origin": "https://evil.example"}
        )
        assert foreign.status == 403
        body = f"{ONE_CLICK}&from=page&group=4&group=99"
        answer = await client.post(f"/u/{token}", data=body, headers={**FORM, "Origin": origin})
        assert answer.status == 200, await answer.text()
        store = client.app[SUPPRESSION_STORE]
        assert await store.get("bob@example.org", group=4) is not None
        assert await store.get("bob@example.org", group=99) is None  # not offered: ignored
        assert await store.get("bob@example.org", group=3) is None
        assert await store.get("bob@example.org") is None
        # JSON still refused as a form elsewhere: the exception is for /u/ only
        other = await client.post("/email/send", data="a=1", headers={**FORM, "Origin": origin})
        assert other.status == 415

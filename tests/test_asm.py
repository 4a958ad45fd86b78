"""Unsubscribe groups: v3's `asm` and `tracking_settings` through SendGrid's own client, the
group dimension of the suppression list in the pipeline's screen, and /asm/groups."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

from sendgrid.helpers.mail import (
    Asm,
    ClickTracking,
    GroupId,
    GroupsToDisplay,
    OpenTracking,
    TrackingSettings,
)

from gomailpy.bulk.hits import unsubscribed
from gomailpy.bulk.tokens import Kind, Link
from gomailpy.email.bulk.options import BulkOptions
from gomailpy.queues.sqs import ReceivedMessage
from gomailpy.store.suppressions import MemorySuppressionStore
from pipeline.prepare.suppress import RecipientScreen
from pipeline.sending.settlement import Item, IterationReport, Plan
from tests.bulk_support import bulk_settings
from tests.support import api_client, make_envelope, make_settings
from tests.test_sendgrid_v3 import plain_mail, queued, send, serve, v3_settings


async def test_the_official_client_sends_asm_and_tracking_settings(
    sqs_endpoint: str, moto_endpoint: str, start_server: object
) -> None:
    settings = await v3_settings(sqs_endpoint, moto_endpoint)
    host = await serve(start_server, settings)  # type: ignore[arg-type]
    mail = plain_mail()
    mail.asm = Asm(GroupId(3), GroupsToDisplay([3, 4]))
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(True, False)
    tracking.open_tracking = OpenTracking(True)
    mail.tracking_settings = tracking
    response = await send(host, mail)
    assert response.status_code == 202
    [envelope] = await queued(settings, 1)
    assert envelope.bulk == BulkOptions(
        unsubscribe=True, group=3, groups_to_display=[3, 4], opens=True, clicks=True
    )


def _item(n: int, group: int | None, to: str) -> Item:
    bulk = BulkOptions(unsubscribe=True, group=group) if group else None
    envelope = make_envelope(n, toEmail=to).model_copy(update={"bulk": bulk})
    message = ReceivedMessage("q", f"id{n}", f"r{n}", envelope.encode(), 1)
    return Item(message, envelope)


async def test_a_group_suppression_drops_that_groups_mail_only() -> None:
    settings = make_settings("http://127.0.0.1:1")
    store = MemorySuppressionStore(settings.suppression)
    link = Link(Kind.UNSUBSCRIBE, "earlier", "ann@example.org", 3)
    [entry] = await store.apply([unsubscribed(link, 3, time.time(), "one-click")])
    assert entry.group == 3
    screen = RecipientScreen(store)
    items = [
        _item(0, 3, "ann@example.org"),  # group 3: dropped
        _item(1, 4, "ann@example.org"),  # another group: sent
        _item(2, None, "ann@example.org"),  # no group: sent (the global list does not have her)
    ]
    kept, plan = await screen((items, Plan()), IterationReport())
    assert [i.envelope.id for i in kept] == [items[1].envelope.id, items[2].envelope.id]
    assert len(plan.dead_letters) == 1
    assert await store.get("ann@example.org") is None


async def test_groups_are_managed_through_the_api(sqs_endpoint: str) -> None:
    settings = await bulk_settings(sqs_endpoint)
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        made = await client.post("/asm/groups", json={"name": "News", "description": "Monthly"})
        assert made.status == 201
        assert (await made.json())["id"] == 1
        assert (await client.post("/asm/groups", json={"id": 7, "name": "Offers"})).status == 201
        bad = await client.post("/asm/groups", json={"name": "", "id": -1, "x": 1})
        assert bad.status == 422
        listed = await (await client.get("/asm/groups")).json()
        assert [g["name"] for g in listed["groups"]] == ["News", "Offers"]
        assert (await client.delete("/asm/groups/7")).status == 204
        assert (await client.delete("/asm/groups/7")).status == 404
        assert (await client.delete("/asm/groups/x%00")).status == 404

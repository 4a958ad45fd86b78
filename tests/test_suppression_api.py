"""The suppression list and per-recipient outcomes over HTTP, against the real app on the test
bed's SQS server (stores in memory: the app's own)."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from api.auth import hash_key
from api.views.suppressions import OUTCOME_STORE, SUPPRESSION_STORE
from gomailpy.config.settings import Settings
from gomailpy.events import EventType
from tests.support import Client, StartClient, email_request, make_settings
from tests.test_outcomes import event

KEY = "suppression-key-" + "k" * 30


async def client_for(
    start_client: StartClient, settings: Settings, **sections: dict[str, Any]
) -> Client:
    data = settings.model_dump(mode="python")
    for section, values in sections.items():
        data[section].update(values)
    data["status"]["backend"] = "memory"
    return await start_client(create_app(Settings.model_validate(data)))


async def test_operators_put_get_list_and_delete(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings)
    answer = await client.put("/suppressions/Someone@Example.org", json={"reason": "asked"})
    assert answer.status == 200
    entry = await answer.json()
    assert (entry["address"], entry["kind"], entry["reason"]) == (
        "someone@example.org",
        "manual",
        "asked",
    )
    assert (await client.put("/suppressions/other@example.org")).status == 200
    got = await client.get("/suppressions/someone@example.org")
    assert got.status == 200 and (await got.json())["firstSeen"] == entry["firstSeen"]
    first = await (await client.get("/suppressions?limit=1")).json()
    second = await (await client.get(f"/suppressions?limit=1&cursor={first['next']}")).json()
    listed = [e["address"] for e in first["suppressions"] + second["suppressions"]]
    assert sorted(listed) == ["other@example.org", "someone@example.org"]
    assert (await client.delete("/suppressions/someone@example.org")).status == 204
    assert (await client.delete("/suppressions/someone@example.org")).status == 404
    assert (await client.get("/suppressions/someone@example.org")).status == 404


async def test_bad_input_gets_a_clear_4xx(settings: Settings, start_client: StartClient) -> None:
    client = await client_for(start_client, settings)
    bad = await client.put("/suppressions/not-an-address")
    assert bad.status == 422 and "address" in (await bad.json())["errors"]
    assert (await client.get("/suppressions?limit=0")).status == 400
    assert (await client.get("/suppressions?limit=x")).status == 400
    body = await client.put("/suppressions/a@example.org", data=b"[1]")
    assert body.status == 400
    long = await client.put("/suppressions/a@example.org", json={"reason": "x" * 400})
    assert long.status == 422


async def test_the_list_is_behind_the_api_key(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings, api={"api_key_hashes": [hash_key(KEY)]})
    assert (await client.get("/suppressions")).status == 401
    assert (await client.put("/suppressions/a@example.org")).status == 401
    allowed = await client.put("/suppressions/a@example.org", headers={"X-Api-Key": KEY})
    assert allowed.status == 200


async def test_the_list_off_answers_501(sqs_endpoint: str, start_client: StartClient) -> None:
    client = await start_client(create_app(make_settings(sqs_endpoint)))
    assert (await client.get("/suppressions")).status == 501


async def test_refuse_at_api_names_the_field_and_the_reason(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings, suppression={"refuse_at_api": True})
    await client.put("/suppressions/rcpt1@example.org", json={"reason": "hard bounce"})
    refused = await client.post("/email/send", json=email_request(1))
    assert refused.status == 422
    why = (await refused.json())["errors"]["toEmail"]
    assert "rcpt1@example.org is suppressed (manual: hard bounce)" in why
    assert (await client.post("/email/send", json=email_request(2))).status == 200
    both = email_request(1, to=[{"email": "fine@example.org"}])
    assert (await client.post("/email/send", json=both)).status == 200


async def test_email_status_shows_each_recipient_and_the_events(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings)
    sent = await client.post("/email/send", json=email_request(1, to=[{"email": "b@example.org"}]))
    message_id = (await sent.json())["messageId"]
    outcomes = client.app[OUTCOME_STORE]
    assert SUPPRESSION_STORE in client.app
    await outcomes.record(
        [
            event(EventType.BOUNCED, "b@example.org", message_id=message_id, subtype="hard"),
            event(EventType.DELIVERED, "rcpt1@example.org", message_id=message_id),
        ]
    )
    answer = await (await client.get(f"/email/{message_id}")).json()
    assert {a: r["state"] for a, r in answer["recipients"].items()} == {
        "b@example.org": "bounced",
        "rcpt1@example.org": "delivered",
    }
    assert answer["recipients"]["b@example.org"]["subtype"] == "hard"
    states = [e["state"] for e in answer["timeline"]]
    assert states[0] == "queued" and {"bounced", "delivered"} <= set(states)

"""The operator's controls over HTTP (api.views.controls), against the real app on the test bed's
SQS server, with the controls in the app's own memory."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from api.auth import hash_key
from gomailpy.config.settings import Settings
from tests.support import Client, StartClient

KEY = "controls-key-" + "k" * 30
AUTH = {"Authorization": f"Bearer {KEY}"}


async def client_for(start_client: StartClient, settings: Settings, *, keys: bool) -> Client:
    data: dict[str, Any] = settings.model_dump(mode="python")
    data["status"]["backend"] = "memory"
    data["api"]["api_key_hashes"] = [hash_key(KEY)] if keys else []
    return await start_client(create_app(Settings.model_validate(data)))


async def test_changes_are_made_and_recorded_with_the_key_that_made_them(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings, keys=True)
    changed = await client.post(
        "/admin/providers/ses/disable", json={"reason": "SES outage"}, headers=AUTH
    )
    assert changed.status == 200
    body = await changed.json()
    ses = body["providers"]["ses"]
    assert ses["disabled"] and ses["active"] == ["disabled"]
    assert ses["changed"]["by"] == f"key {hash_key(KEY)[:12]}"
    assert ses["changed"]["reason"] == "SES outage"
    weight = await client.post(
        "/admin/providers/smtp/weight", json={"reason": "more", "value": 4}, headers=AUTH
    )
    assert (await weight.json())["providers"]["smtp"]["weight"] == 4
    pinned = await client.post(
        "/admin/providers/sendgrid/pin", json={"reason": "drill"}, headers=AUTH
    )
    assert (await pinned.json())["pinned"] == "sendgrid"
    listed = await (await client.get("/admin/providers", headers=AUTH)).json()
    assert listed["pinned"] == "sendgrid" and listed["providers"]["ses"]["disabled"]


async def test_bad_input_gets_a_clear_4xx(settings: Settings, start_client: StartClient) -> None:
    client = await client_for(start_client, settings, keys=True)
    cases = [
        ("/admin/providers/ses/disable", {}, 400),  # no reason
        ("/admin/providers/ses/disable", {"reason": ""}, 400),
        ("/admin/providers/ses/disable", {"reason": 5}, 400),
        ("/admin/providers/ses/weight", {"reason": "r", "value": 0}, 400),
        ("/admin/providers/ses/weight", {"reason": "r", "value": "x"}, 400),
        ("/admin/providers/ses/weight", {"reason": "r", "value": [1]}, 400),
        ("/admin/providers/ses/force", {"reason": "r", "value": "ajar"}, 400),
        ("/admin/providers/postmark/disable", {"reason": "r"}, 404),
        ("/admin/providers/ses/explode", {"reason": "r"}, 404),
    ]
    for path, body, status in cases:
        answer = await client.post(path, json=body, headers=AUTH)
        assert answer.status == status, (path, body, await answer.text())
        assert "errors" in await answer.json()
    not_json = await client.post("/admin/providers/ses/disable", data=b"{", headers=AUTH)
    assert not_json.status == 400
    listed = await (await client.get("/admin/providers", headers=AUTH)).json()
    assert listed["providers"] == {}  # nothing was changed


async def test_the_admin_api_needs_a_key(settings: Settings, start_client: StartClient) -> None:
    guarded = await client_for(start_client, settings, keys=True)
    assert (await guarded.get("/admin/providers")).status == 401
    bad = {"Authorization": "Bearer wrong"}
    assert (await guarded.post("/admin/providers/ses/disable", headers=bad)).status == 401
    open_api = await client_for(start_client, settings, keys=False)
    refused = await open_api.post("/admin/providers/ses/disable", json={"reason": "r"})
    assert refused.status == 403
    assert "api.api_key_hashes" in (await refused.json())["errors"]["base"]
    assert (await open_api.get("/admin/providers")).status == 403


async def test_the_history_of_changes_as_json(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings, keys=True)
    for path, body in [
        ("/admin/providers/ses/disable", {"reason": "SES outage"}),
        ("/admin/providers/ses/weight", {"reason": "half", "value": 2}),
        ("/admin/providers/smtp/force", {"reason": "relay down", "value": "open"}),
    ]:
        assert (await client.post(path, json=body, headers=AUTH)).status == 200
    answer = await client.get("/admin/providers/history", headers=AUTH)
    assert answer.status == 200
    history = (await answer.json())["history"]
    who = f"key {hash_key(KEY)[:12]}"
    assert [(e["seq"], e["action"], e["provider"], e["by"]) for e in history] == [
        (3, "force", "smtp", who),
        (2, "weight", "ses", who),
        (1, "disable", "ses", who),
    ]
    assert (history[1]["before"], history[1]["after"], history[1]["value"]) == (
        "disabled",
        "disabled, weight 2",
        "2",
    )
    assert history[0]["reason"] == "relay down" and history[0]["at"] > 0
    ses = await client.get("/admin/providers/history?provider=ses&limit=1", headers=AUTH)
    assert [e["action"] for e in (await ses.json())["history"]] == ["weight"]
    for query in ("provider=postmark", "limit=0", "limit=x", "limit=1001"):
        bad = await client.get(f"/admin/providers/history?{query}", headers=AUTH)
        assert bad.status == 400, query
    assert (await client.get("/admin/providers/history")).status == 401
    open_api = await client_for(start_client, settings, keys=False)
    assert (await open_api.get("/admin/providers/history")).status == 403


async def test_a_release_is_stamped_and_recorded(
    settings: Settings, start_client: StartClient
) -> None:
    client = await client_for(start_client, settings, keys=True)
    released = await client.post(
        "/admin/providers/ses/release", json={"reason": "list cleaned"}, headers=AUTH
    )
    assert released.status == 200
    ses = (await released.json())["providers"]["ses"]
    assert ses["released_at"] == ses["changed"]["at"] > 0
    assert ses["active"] == []  # an event, not a state: nothing stays set
    history = await (await client.get("/admin/providers/history", headers=AUTH)).json()
    assert [(e["action"], e["provider"], e["reason"]) for e in history["history"]] == [
        ("release", "ses", "list cleaned")
    ]

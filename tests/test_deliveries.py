"""Delivery status, idempotency and the claim before sending: DynamoDB on moto's server, SQS on
LocalStack, the real API and pipeline node, providers scripted at the boundary."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from gomailpy.batching import Batcher, all_or_first_error
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import StoreError
from gomailpy.operating.resources import ensure_resources
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries import (
    DeliveryRecord,
    DeliveryState,
    DeliveryStore,
    DynamoDeliveryStore,
    MemoryDeliveryStore,
    MessageIds,
    after_attempt,
    open_delivery_store,
)
from pipeline.node import IterationReport, PipelineNode
from tests.boundary import ScriptedProvider
from tests.support import (
    Client,
    api_client,
    email_request,
    enqueue,
    make_envelope,
    make_settings,
    queue_totals,
    unique,
)


def status_settings(
    sqs: str, moto: str | None, backend: str = "dynamodb", **extra: Any
) -> Settings:
    status: dict[str, Any] = {"backend": backend, "table": unique("status")}
    if moto is not None:
        status["endpoint_url"] = moto
    return make_settings(
        sqs,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1, "max_receive_count": 50},
        pipeline={
            "retry_base_delay_s": 0,
            "retry_max_delay_s": 0,
            "send_timeout_s": 1,
            "min_iteration_duration_s": 0,
        },
        api={"serve_webclient": False},
        status=status,
        **extra,
    )


async def prepare(settings: Settings) -> None:
    async with create_queue_client(settings) as queues:
        for entry in settings.queues.urls:
            await queues.ensure_queue(entry)
    await ensure_resources(settings)


async def node_for(
    stack: AsyncExitStack,
    settings: Settings,
    providers: list[ScriptedProvider],
    status: DeliveryStore | None,
    **kwargs: Any,
) -> PipelineNode:
    queues = await stack.enter_async_context(create_queue_client(settings))
    node = PipelineNode(settings, queues, {p.name: p for p in providers}, status=status, **kwargs)
    await stack.enter_async_context(node)
    return node


async def until(
    node: PipelineNode, done: Callable[[], bool], limit: int = 50
) -> list[IterationReport]:
    reports = []
    for _ in range(limit):
        reports.append(await node.run_iteration())
        if done():
            return reports
    raise AssertionError("the pipeline did not get there")


async def post(client: Client, body: Any, key: str | None = None) -> tuple[int, Any, Any]:
    headers = {"Idempotency-Key": key} if key is not None else {}
    response = await client.post("/email/send", json=body, headers=headers)
    return response.status, await response.json(), response.headers


async def status_of(client: Client, message_id: str) -> dict[str, Any]:
    response = await client.get(f"/email/{message_id}")
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def states(record: dict[str, Any]) -> list[str]:
    return [event["state"] for event in record["timeline"]]


# -- status through the pipeline ---------------------------------------------------------------


async def test_status_moves_queued_sending_sent(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    code, answer, _ = await post(client, email_request(1))
    assert code == 200
    message_id = answer["messageId"]

    queued = await status_of(client, message_id)
    assert queued["state"] == "queued" and states(queued) == ["queued"]
    assert queued["messageId"] == message_id and queued["provider"] is None

    status = await open_delivery_store(stack, settings)
    provider = ScriptedProvider("p")
    node = await node_for(stack, settings, [provider], status)
    await until(node, lambda: bool(provider.accepted))

    sent = await status_of(client, message_id)
    assert sent["state"] == "sent"
    assert sent["provider"] == "p" and sent["providerMessageId"] == f"p-{message_id}"
    assert states(sent) == ["queued", "sending", "sent"]
    assert sent["timeline"][1]["attempt"] == 1
    assert sent["timeline"][-1]["providerMessageId"] == f"p-{message_id}"
    assert sent["createdAt"] == sent["timeline"][0]["at"] <= sent["updatedAt"]


async def test_status_shows_retrying_then_sent(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    _, answer, _ = await post(client, email_request(2))
    message_id = answer["messageId"]
    status = await open_delivery_store(stack, settings)
    provider = ScriptedProvider("p", mode="fail")
    node = await node_for(stack, settings, [provider], status)

    await until(node, lambda: provider.attempts[message_id] >= 1)
    retrying = await status_of(client, message_id)
    assert retrying["state"] == "retrying"
    assert retrying["attempt"] == 1
    assert (
        "503 service unavailable" in retrying["reason"] and "transient at p" in retrying["reason"]
    )

    provider.mode = "ok"
    await until(node, lambda: bool(provider.accepted))
    sent = await status_of(client, message_id)
    assert sent["state"] == "sent" and sent["reason"] is None
    assert states(sent) == ["queued", "sending", "retrying", "sending", "sent"]
    assert sent["attempt"] == 2


async def test_status_shows_a_permanent_failure(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    _, answer, _ = await post(client, email_request(3))
    message_id = answer["messageId"]
    status = await open_delivery_store(stack, settings)
    provider = ScriptedProvider("p", permanent_ids={message_id})
    node = await node_for(stack, settings, [provider], status)
    await until(node, lambda: provider.attempts[message_id] >= 1)

    failed = await status_of(client, message_id)
    assert failed["state"] == "failed"
    assert "550 no such user" in failed["reason"]
    assert states(failed) == ["queued", "sending", "failed"]
    totals = await queue_totals(settings)
    assert totals[settings.queues.urls[0]] == 0 and totals[settings.queues.urls[0] + "-dlq"] == 1


async def test_unknown_id_is_404_and_status_off_is_501(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    response = await client.get("/email/no-such-id")
    assert response.status == 404
    assert "no-such-id" in (await response.json())["errors"]["base"]

    off = await api_client(stack, make_settings(sqs_endpoint, api={"serve_webclient": False}))
    response = await off.get("/email/anything")
    assert response.status == 501
    assert "status.backend" in (await response.json())["errors"]["base"]
    response = await off.post(
        "/email/send", json=email_request(), headers={"Idempotency-Key": "k-1"}
    )
    assert response.status == 501
    assert "Idempotency-Key" in (await response.json())["errors"]["base"]
    assert (await off.get("/email/send")).status == 405  # still POST only


# -- idempotency --------------------------------------------------------------------------------


async def queued_ids(settings: Settings) -> list[str]:
    """Every envelope id on the (one) queue, read and left in flight."""
    ids: list[str] = []
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.queues.urls[0])
        for _ in range(3):
            ids += [Envelope.decode(m.body).id for m in await queues.receive(url, wait_time_s=1)]
    return ids


async def test_repeated_idempotency_key_answers_the_same_and_queues_once(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    body = email_request(4)
    code, first, headers = await post(client, body, key="order-4711")
    assert code == 200 and "Idempotent-Replayed" not in headers

    # the same JSON, keys in another order: the same body
    reordered = {"email": dict(reversed(list(body["email"].items())))}
    for again in (body, reordered):
        code, answer, headers = await post(client, again, key="order-4711")
        assert code == 200
        assert answer == first
        assert headers["Idempotent-Replayed"] == "true"

    code, other, _ = await post(client, body, key="order-4712")  # a new key: a new email
    assert code == 200 and other["messageId"] != first["messageId"]
    assert sorted(await queued_ids(settings)) == sorted([first["messageId"], other["messageId"]])


async def test_same_key_with_another_body_is_refused(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    code, first, _ = await post(client, email_request(5), key="k-5")
    assert code == 200
    code, answer, _ = await post(client, email_request(5, subject="Changed"), key="k-5")
    assert code == 422
    assert answer["errors"]["base"].startswith(
        "This Idempotency-Key was already used with a different request body"
    )
    code, answer, _ = await post(client, email_request(5), key="bad key with spaces")
    assert code == 400 and "Idempotency-Key" in answer["errors"]["base"]
    assert await queued_ids(settings) == [first["messageId"]]


async def test_concurrent_requests_with_one_key_queue_one_email(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    answers = await asyncio.gather(*(post(client, email_request(6), key="k-6") for _ in range(8)))
    codes = Counter(code for code, _, _ in answers)
    assert set(codes) <= {200, 409}, answers
    ids = {answer["messageId"] for code, answer, _ in answers if code == 200}
    assert len(ids) == 1
    assert await queued_ids(settings) == list(ids)


async def test_idempotent_email_is_sent_once(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint)
    await prepare(settings)
    client = await api_client(stack, settings)
    for _ in range(3):
        code, answer, _ = await post(client, email_request(7), key="k-7")
        assert code == 200
    status = await open_delivery_store(stack, settings)
    provider = ScriptedProvider("p")
    node = await node_for(stack, settings, [provider], status)
    await until(node, lambda: bool(provider.accepted))
    for _ in range(2):
        await node.run_iteration()
    assert provider.accepted == [answer["messageId"]]
    assert set((await queue_totals(settings)).values()) == {0}


# -- the claim: a crash between send and delete ------------------------------------------------


class Crash(Exception):
    pass


def crash_once() -> Callable[[Envelope], Awaitable[None] | None]:
    crashed: list[str] = []

    def hook(envelope: Envelope) -> None:
        if not crashed:
            crashed.append(envelope.id)
            raise Crash(f"killed after sending {envelope.id}")

    return hook


async def crash_then_restart(
    settings: Settings, status: DeliveryStore | None
) -> tuple[list[str], ScriptedProvider, int]:
    ids = await enqueue(settings, 5)
    provider = ScriptedProvider("p")
    async with AsyncExitStack() as first:
        node = await node_for(first, settings, [provider], status, after_send=crash_once())
        with pytest.raises(Crash):
            for _ in range(20):
                await node.run_iteration()
    already_sent = 0
    async with AsyncExitStack() as second:  # a new node: the first "died"
        node = await node_for(second, settings, [provider], status)
        for _ in range(20):
            report = await node.run_iteration()
            already_sent += report.already_sent
            if sum((await queue_totals(settings)).values()) == 0:
                break
    return ids, provider, already_sent


@pytest.mark.parametrize("backend", ["dynamodb", "memory"])
async def test_crash_between_send_and_delete_sends_once(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack, backend: str
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint, backend=backend)
    await prepare(settings)
    status = await open_delivery_store(stack, settings)
    ids, provider, already_sent = await crash_then_restart(settings, status)
    assert sorted(provider.accepted) == sorted(ids)
    assert Counter(provider.accepted).most_common(1)[0][1] == 1  # one send each, not two
    assert already_sent >= 1  # the crashed batch came back and was deleted unsent
    assert set((await queue_totals(settings)).values()) == {0}
    assert status is not None
    for message_id in ids:
        record = await status.get(message_id)
        assert record is not None and record.state is DeliveryState.SENT


async def test_without_the_status_store_the_same_crash_sends_twice(sqs_endpoint: str) -> None:
    # The control: it is the claim that prevents the second send.
    settings = status_settings(sqs_endpoint, None, backend="none")
    await prepare(settings)
    ids, provider, _ = await crash_then_restart(settings, None)
    assert sorted(set(provider.accepted)) == sorted(ids)
    assert len(provider.accepted) > len(ids)


# -- the stores themselves ---------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "dynamodb"])
async def store_and_clock(
    request: pytest.FixtureRequest, moto_endpoint: str, stack: AsyncExitStack
) -> tuple[DeliveryStore, FakeClock]:
    clock = FakeClock()
    settings = make_settings(
        "http://127.0.0.1:9",
        status={
            "backend": request.param,
            "endpoint_url": moto_endpoint,
            "table": unique("status"),
            "ttl_s": 3600,
            "idempotency_window_s": 600,
        },
    )
    if request.param == "memory":
        return MemoryDeliveryStore(settings.status, clock=clock), clock
    store = await stack.enter_async_context(DynamoDeliveryStore(settings, clock=clock))
    await store.ensure_table()
    return store, clock


def attempt(
    previous: DeliveryRecord | None, state: DeliveryState, now: float, n: int = 1, **extra: Any
) -> DeliveryRecord | None:
    return after_attempt(
        previous,
        "m",
        queued_at=now - 10,
        state=state,
        now=now,
        attempt=n,
        sending_at=now - 1,
        **extra,
    )


async def test_records_read_and_written_in_batches(
    store_and_clock: tuple[DeliveryStore, FakeClock],
) -> None:
    store, clock = store_and_clock
    assert await store.get_many(["m", "n"]) == {}
    retrying = attempt(None, DeliveryState.RETRYING, clock.now, reason="503")
    assert retrying is not None
    others = [
        r
        for i in range(60)  # more than one BatchWriteItem (25) holds
        if (
            r := after_attempt(
                None,
                f"x{i}",
                queued_at=clock.now,
                state=DeliveryState.SENT,
                now=clock.now,
                attempt=1,
            )
        )
        is not None
    ]
    await store.put_many([retrying, *others])
    found = await store.get_many(["m", "nobody", *[f"x{i}" for i in range(60)]])
    assert set(found) == {"m", *[f"x{i}" for i in range(60)]}
    assert found["m"].state is DeliveryState.RETRYING and found["m"].reason == "503"
    assert [e["state"] for e in found["m"].timeline] == ["queued", "sending", "retrying"]

    clock.now += 5
    sent = attempt(
        found["m"], DeliveryState.SENT, clock.now, 2, provider="ses", provider_message_id="s-1"
    )
    assert sent is not None
    await store.put_many([sent])
    record = await store.get("m")
    assert record is not None and record.state is DeliveryState.SENT and record.provider == "ses"
    assert [e["state"] for e in record.timeline] == [
        "queued",
        "sending",
        "retrying",
        "sending",
        "sent",
    ]
    assert record.attempt == 2 and record.reason is None
    # a late outcome never undoes a send: there is nothing to write
    assert attempt(record, DeliveryState.FAILED, clock.now, 3, reason="late") is None
    await store.mark_failed("m", "late news")
    again = await store.get("m")
    assert again is not None and again.state is DeliveryState.SENT
    await store.mark_failed("f", "550")  # suppressed or cancelled before any attempt
    failed = await store.get("f")
    assert failed is not None and failed.state is DeliveryState.FAILED and failed.reason == "550"


async def test_records_and_keys_expire(store_and_clock: tuple[DeliveryStore, FakeClock]) -> None:
    store, clock = store_and_clock
    await store.record_queued("m")
    assert await store.reserve_key("k", "h", "m") is None
    clock.now += 601  # past the idempotency window
    assert await store.reserve_key("k", "other", "m2") is None  # the key is free again
    assert await store.get("m") is not None
    clock.now += 3600  # past the record's TTL
    assert await store.get("m") is None  # hidden even before DynamoDB's TTL sweep deletes it


async def test_key_reservation(store_and_clock: tuple[DeliveryStore, FakeClock]) -> None:
    store, _ = store_and_clock
    assert await store.reserve_key("k", "h", "m1") is None
    held = await store.reserve_key("k", "h", "m2")
    assert held is not None and held.message_id == "m1" and held.response is None
    await store.release_key("k")  # the first request failed: a retry may go through
    assert await store.reserve_key("k", "h", "m3") is None
    await store.complete_key("k", json.dumps({"messageId": "m3"}))
    await store.release_key("k")  # a completed key is never released
    held = await store.reserve_key("k", "h2", "m4")
    assert held is not None and held.body_hash == "h" and held.response == '{"messageId": "m3"}'


async def test_queued_never_overwrites_a_record(
    store_and_clock: tuple[DeliveryStore, FakeClock],
) -> None:
    store, clock = store_and_clock
    sent = attempt(None, DeliveryState.SENT, clock.now, provider="p", provider_message_id="p-1")
    assert sent is not None
    await store.put_many([sent])
    await store.record_queued("m", at=clock.now - 20)
    record = await store.get("m")
    assert record is not None and record.state is DeliveryState.SENT


def test_message_ids_carry_their_time_and_a_mac() -> None:
    ids = MessageIds(b"k" * 32, ttl_s=3600)
    now = 1_800_000_000.0
    message_id = ids.new(now)
    assert abs((ids.issued_at(message_id, now + 1) or 0) - now) < 0.001
    assert ids.issued_at(message_id, now + 3601) is None  # expired with its record
    assert MessageIds(b"other", 3600).issued_at(message_id, now) is None  # not ours
    tampered = message_id[:-1] + ("0" if message_id[-1] != "0" else "1")
    assert ids.issued_at(tampered, now) is None
    assert ids.issued_at("no-such-id", now) is None
    assert len({ids.new(now) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_api_writes_nothing_per_email_and_answers_queued(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack, backend: str
) -> None:
    settings = status_settings(sqs_endpoint, moto_endpoint, backend=backend)
    await prepare(settings)
    client = await api_client(stack, settings)
    code, answer, _ = await post(client, email_request(9))
    assert code == 200
    store = await open_delivery_store(stack, settings)
    assert store is not None and await store.get(answer["messageId"]) is None  # nothing written
    queued = await status_of(client, answer["messageId"])
    assert queued["state"] == "queued" and states(queued) == ["queued"]
    forged = answer["messageId"][:-4] + "0000"
    assert (await client.get(f"/email/{forged}")).status == 404


async def test_dynamodb_table_has_ttl_on_expires_at(
    moto_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = status_settings("http://127.0.0.1:9", moto_endpoint)
    await ensure_resources(settings)
    await ensure_resources(settings)  # safe to run again
    client = await open_aws_client(stack, "dynamodb", settings.aws, endpoint_url=moto_endpoint)
    ttl = await client.describe_time_to_live(TableName=settings.status.table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    store = await stack.enter_async_context(DynamoDeliveryStore(settings, client=client))
    await store.record_queued("m")
    item = await client.get_item(TableName=settings.status.table, Key={"pk": {"S": "msg#m"}})
    record = await store.get("m")
    assert record is not None
    assert abs(int(item["Item"]["expires_at"]["N"]) - record.expires_at) < 1


@pytest.mark.parametrize("backend", ["dynamodb", "memory"])
async def test_an_email_queued_twice_is_sent_once(
    sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack, backend: str
) -> None:
    # An API whose SendMessageBatch timed out and was retried may queue one email twice; both
    # copies can arrive in one batch, where the store has no record of either yet.
    settings = status_settings(sqs_endpoint, moto_endpoint, backend=backend)
    await prepare(settings)
    envelope = make_envelope(1)
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.queues.urls[0])
        await queues.send_batch(url, [("0", envelope.encode()), ("1", envelope.encode())])
    status = await open_delivery_store(stack, settings)
    provider = ScriptedProvider("p")
    node = await node_for(stack, settings, [provider], status)
    for _ in range(30):
        await node.run_iteration()
        if sum((await queue_totals(settings)).values()) == 0:
            break
    assert provider.accepted == [envelope.id]
    assert set((await queue_totals(settings)).values()) == {0}


def put(key: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"pk": {"S": key}}}}


async def test_concurrent_writes_share_batch_calls() -> None:
    calls: list[list[str]] = []

    async def flush(items: list[Any]) -> list[None | BaseException]:
        calls.append([i["PutRequest"]["Item"]["pk"]["S"] for i in items])
        if any(k.startswith("bad") for k in calls[-1]):
            raise StoreError("batch_write_item", "refused")
        return [None] * len(items)

    # as the DynamoDB delivery store shares its writes
    writes: Batcher[dict[str, Any], None] = Batcher(
        flush, size=25, linger_s=0.01, key=lambda i: i["PutRequest"]["Item"]["pk"]["S"]
    )

    async def put_all(items: list[dict[str, Any]]) -> None:
        await all_or_first_error(writes.submit_many(items))

    await asyncio.gather(*(put_all([put(f"m{i}-{j}") for j in range(3)]) for i in range(10)))
    assert [len(c) for c in calls] == [25, 5]  # 30 records from 10 callers: 2 calls, not 10
    calls.clear()
    await put_all([put("a"), put("b"), put("a")])  # a key twice: never in one call
    assert calls == [["a", "b"], ["a"]]
    with pytest.raises(StoreError):
        await asyncio.gather(put_all([put("ok")]), put_all([put("bad")]))


class UnprocessingClient:
    """A DynamoDB client whose BatchWriteItem never processes records named bad-*."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, puts),) = RequestItems.items()
        self.calls.append([p["PutRequest"]["Item"]["pk"]["S"] for p in puts])
        left = [p for p in puts if "bad-" in p["PutRequest"]["Item"]["pk"]["S"]]
        return {"UnprocessedItems": {table: left} if left else {}}


async def test_an_unprocessed_record_fails_only_its_writer() -> None:
    settings = make_settings(
        "http://127.0.0.1:1", status={"backend": "dynamodb", "table": "status-t"}
    )
    client = UnprocessingClient()
    async with DynamoDeliveryStore(settings, client=client) as store:
        good = DeliveryRecord(
            message_id="good-1", state=DeliveryState.SENT, created_at="", updated_at=""
        )
        bad = DeliveryRecord(
            message_id="bad-1", state=DeliveryState.SENT, created_at="", updated_at=""
        )
        outcomes = await asyncio.gather(
            store.put_many([good]), store.put_many([bad]), return_exceptions=True
        )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], StoreError)
    assert client.calls[0] == ["msg#good-1", "msg#bad-1"]  # they shared a call
    assert all(call == ["msg#bad-1"] for call in client.calls[1:])  # only it was tried again

"""API batching (api.enqueue.batcher) against the real SQS server of the test bed (LocalStack).

Concurrent requests for one queue share SendMessageBatch calls (natural batching: a call leaves
whenever one of the queue's two call slots is free, with what is waiting), counted with
botocore's event hooks; each request is answered from its own entry only. Requests are started
together (one `asyncio.gather`), so they all reach the batcher in one pass of the event loop,
before its first call starts: the counts do not depend on how fast anything runs. No test
asserts a time.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.enqueue.batcher import SendBatcher
from api.enqueue.gateway import QueueGateway
from gomailpy.config.settings import ApiSettings, Settings, load_settings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import ConfigError, NoQueueAvailableError, QueueError, UnqueueableEmailError
from gomailpy.queues.sqs import BatchResult, QueueClient, queue_name
from tests.support import email_request, make_settings

NATURAL = ApiSettings()  # the defaults: no linger, two calls in flight per queue


@dataclass(eq=False)  # hashable: botocore keys handlers by identity
class Calls:
    """SendMessageBatch calls as the client made them: queue URL and entry count, in order."""

    made: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, params: Mapping[str, Any], **_: Any) -> None:
        self.made.append((str(params["QueueUrl"]), len(params["Entries"])))

    def to(self, url: str) -> list[int]:
        return [n for u, n in self.made if u == url]


def count_calls(queues: QueueClient) -> Calls:
    calls = Calls()
    # Once per call (retries are not calls), with the call's own parameters.
    queues.client.meta.events.register("before-parameter-build.sqs.SendMessageBatch", calls)
    return calls


class Fixed:
    """A chooser that always offers the queues in configuration order."""

    def order(self, queues: Sequence[str], depths: Mapping[str, int]) -> list[str]:
        return list(queues)


@pytest.fixture
async def settings(sqs_endpoint: str) -> Settings:
    return make_settings(sqs_endpoint, queue_count=2)


async def bodies_on(queues: QueueClient, url: str) -> Counter[str]:
    """Every body on the queue (each counted), received until the queue is empty."""
    found: Counter[str] = Counter()
    while True:
        batch = await queues.receive(url, wait_time_s=0, visibility_timeout_s=300)
        if not batch:
            # An empty answer may be a sampling miss; ask the depth to be sure.
            if (await queues.depth(url)).visible == 0:
                return found
            continue
        found.update(m.body for m in batch)


Refusal = NoQueueAvailableError | UnqueueableEmailError


async def enqueue_all(gateway: QueueGateway, bodies: Sequence[str]) -> list[str | Refusal]:
    """Enqueue every body at once; per body, the queue name or the refusal raised."""
    answers = await asyncio.gather(
        *(gateway.enqueue(body) for body in bodies), return_exceptions=True
    )
    out: list[str | Refusal] = []
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, Refusal):
            raise answer
        out.append(answer)
    return out


async def test_requests_arriving_together_share_batch_calls(
    queues: QueueClient, urls: list[str]
) -> None:
    first = urls[0]
    gateway = QueueGateway(queues, [first], Fixed(), api=NATURAL)
    calls = count_calls(queues)
    bodies = [f"email {i}" for i in range(25)]

    answers = await enqueue_all(gateway, bodies)

    assert answers == [queue_name(first)] * 25
    # Two full calls fill the two slots; the rest waits for one of them, not for a timer.
    assert calls.to(first) == [10, 10, 5]
    assert await bodies_on(queues, first) == Counter(bodies)


async def test_one_entry_per_call_turns_batching_off(queues: QueueClient, urls: list[str]) -> None:
    first = urls[0]
    gateway = QueueGateway(queues, [first], Fixed(), api=ApiSettings(batch_max_entries=1))
    calls = count_calls(queues)

    answers = await enqueue_all(gateway, [f"email {i}" for i in range(5)])

    assert answers == [queue_name(first)] * 5
    assert calls.to(first) == [1] * 5


async def test_an_entry_the_batch_refuses_fails_alone(queues: QueueClient, urls: list[str]) -> None:
    first, second = urls
    gateway = QueueGateway(queues, urls, Fixed(), api=NATURAL)
    calls = count_calls(queues)
    bad = "invalid \x00 character"  # SQS refuses this entry, and only this one, in the batch
    bodies = [f"email {i}" for i in range(9)]

    answers = await enqueue_all(gateway, [*bodies[:4], bad, *bodies[4:]])

    refused = answers.pop(4)
    assert isinstance(refused, UnqueueableEmailError)  # the request's fault: a 400, not a 503
    assert "InvalidMessageContents" in refused.reason
    assert answers == [queue_name(first)] * 9
    assert calls.to(first) == [10]  # one shared call; its refused entry did not fail the rest
    assert calls.to(second) == []  # every queue would refuse its contents: none is asked
    assert await bodies_on(queues, first) == Counter(bodies)
    assert await bodies_on(queues, second) == Counter()


async def test_an_entry_too_large_for_a_batch_goes_alone_and_fails_alone(
    queues: QueueClient, urls: list[str]
) -> None:
    first = urls[0]
    gateway = QueueGateway(queues, [first], Fixed(), api=NATURAL)
    calls = count_calls(queues)
    huge = "x" * 1_100_000  # longer than any SQS server takes in one call
    bodies = [f"email {i}" for i in range(6)]

    answers = await enqueue_all(gateway, [*bodies[:3], huge, *bodies[3:]])

    assert isinstance(answers.pop(3), UnqueueableEmailError)
    assert answers == [queue_name(first)] * 6
    assert await bodies_on(queues, first) == Counter(bodies)
    assert sorted(calls.to(first)) == [1, 3, 3]  # before it, itself, after it


async def test_a_batch_refused_as_a_whole_is_split_until_the_bad_entry_is_alone(
    queues: QueueClient, urls: list[str]
) -> None:
    first = urls[0]
    # No byte cap: the server refuses the whole call (BatchRequestTooLong) for one entry.
    batcher = SendBatcher(queues, max_bytes=10**9)
    gateway = QueueGateway(queues, [first], Fixed(), batcher=batcher)
    calls = count_calls(queues)
    huge = "x" * 1_100_000
    bodies = [f"email {i}" for i in range(7)]

    answers = await enqueue_all(gateway, [*bodies[:5], huge, *bodies[5:]])

    assert isinstance(answers.pop(5), UnqueueableEmailError)
    assert answers == [queue_name(first)] * 7
    assert calls.to(first)[0] == 8
    assert await bodies_on(queues, first) == Counter(bodies)  # each exactly once


async def test_a_queue_that_refuses_every_call_moves_the_batch_to_the_next(
    sqs_endpoint: str, queues: QueueClient, urls: list[str]
) -> None:
    real = urls[0]
    missing = real.rsplit("/", 1)[0] + "/does-not-exist-" + queue_name(real)
    gateway = QueueGateway(queues, [missing, real], Fixed(), api=NATURAL)
    calls = count_calls(queues)
    bodies = [f"email {i}" for i in range(8)]

    answers = await enqueue_all(gateway, bodies)

    assert answers == [queue_name(real)] * 8
    assert calls.to(missing) == [8]  # one refused call, not split: the queue is the problem
    assert calls.to(real) == [8]  # the requests moved on together and shared a call again
    assert await bodies_on(queues, real) == Counter(bodies)


async def test_a_request_cancelled_before_its_batch_left_is_not_sent(
    queues: QueueClient, urls: list[str]
) -> None:
    first = urls[0]
    gateway = QueueGateway(queues, [first], Fixed(), api=NATURAL)
    calls = count_calls(queues)

    gone = asyncio.create_task(gateway.enqueue("cancelled"))
    await asyncio.sleep(0)  # it is waiting in the open batch now
    gone.cancel()
    assert await gateway.enqueue("kept") == queue_name(first)

    assert calls.to(first) == [1]
    assert await bodies_on(queues, first) == Counter(["kept"])
    await gateway.aclose()


async def test_concurrent_http_requests_each_get_their_own_message_on_a_queue(
    settings: Settings, queues: QueueClient, urls: list[str]
) -> None:
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        responses = await asyncio.gather(
            *(client.post("/email/send", json=email_request(i)) for i in range(30))
        )
        ids = []
        for response in responses:
            assert response.status == 200
            ids.append((await response.json())["messageId"])
    finally:
        await client.close()

    found: Counter[str] = Counter()
    for url in urls:
        found.update(Envelope.decode(body).id for body in (await bodies_on(queues, url)).elements())
    assert found == Counter(ids)  # every answer's email is queued, once
    assert len(set(ids)) == 30


def test_batch_knobs_are_validated() -> None:
    defaults = ApiSettings()
    assert (defaults.batch_linger_ms, defaults.batch_max_calls) == (0, 2)  # natural batching
    with pytest.raises(ValueError):
        ApiSettings(batch_max_entries=11)
    with pytest.raises(ValueError):
        ApiSettings(batch_linger_ms=-1)
    with pytest.raises(ValueError):
        ApiSettings(batch_max_calls=0)
    assert json.loads(ApiSettings(batch_max_calls=4).model_dump_json())["batch_max_calls"] == 4


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("GOMAILPY_API__BATCH_MAX_CALLS", "0", "api.batch_max_calls"),
        ("GOMAILPY_API__BATCH_LINGER_MS", "-1", "api.batch_linger_ms"),
    ],
)
def test_a_bad_batch_knob_is_named_in_the_config_error(variable: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env={variable: value})
    assert key in str(raised.value)


@dataclass(eq=False)
class Flaky:
    """QueueClient.send_batch as the app calls it, with failures the test chooses: the queue
    server reports Failed for the entries of emails whose subject starts with "fail" (in every
    call, on every queue: a partial failure of SendMessageBatch) and sends the others for real;
    the first call to `down` fails as a whole before sending anything (a 5xx)."""

    real: Any
    down: str = ""
    sizes: list[int] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def send_batch(
            queues: QueueClient, url: str, entries: Sequence[tuple[str, str]]
        ) -> BatchResult:
            return await self.send_batch(queues, url, entries)

        monkeypatch.setattr(QueueClient, "send_batch", send_batch)

    async def send_batch(
        self, queues: QueueClient, url: str, entries: Sequence[tuple[str, str]]
    ) -> BatchResult:
        self.sizes.append(len(entries))
        if url == self.down:
            self.down = ""
            raise QueueError(queue_name(url), "SendMessageBatch", "ServiceUnavailable: 503")
        failing = {i for i, body in entries if Envelope.decode(body).email.subject[:4] == "fail"}
        result: BatchResult = await self.real(
            queues, url, [(i, body) for i, body in entries if i not in failing]
        )
        for i in failing:
            result.failed[i] = "InternalError: the server failed this entry"
        return result


async def post_all(settings: Settings, requests: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """POST every request at once to an app of `settings`: per request, status and message id."""
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        responses = await asyncio.gather(
            *(client.post("/email/send", json=request) for request in requests)
        )
        return [
            (r.status, (await r.json()).get("messageId", "") if r.status == 200 else "")
            for r in responses
        ]
    finally:
        await client.close()


async def queued_ids(queues: QueueClient, urls: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for url in urls:
        found.update(Envelope.decode(body).id for body in (await bodies_on(queues, url)).elements())
    return found


async def test_a_partial_failure_answers_503_to_exactly_those_requests(
    settings: Settings, queues: QueueClient, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(QueueClient.send_batch)
    flaky.install(monkeypatch)
    failing = {3, 11, 12, 27}
    requests = [
        email_request(i, subject=f"{'fail' if i in failing else 'mail'} {i}") for i in range(30)
    ]

    answers = await post_all(settings, requests)

    assert [i for i, (status, _) in enumerate(answers) if status == 503] == sorted(failing)
    assert all(status == 200 for i, (status, _) in enumerate(answers) if i not in failing)
    assert max(flaky.sizes) > 1  # the failed entries shared calls with accepted ones
    accepted = [message_id for status, message_id in answers if status == 200]
    assert await queued_ids(queues, urls) == Counter(accepted)  # each accepted email once


async def test_a_call_that_fails_as_a_whole_loses_and_doubles_nothing(
    settings: Settings, queues: QueueClient, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(QueueClient.send_batch, down=urls[0])
    flaky.install(monkeypatch)
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"queue_choice": "round-robin"})}
    )

    answers = await post_all(settings, [email_request(i) for i in range(30)])

    assert [status for status, _ in answers] == [200] * 30
    assert not flaky.down  # the failing call was made: its entries moved to the other queue
    assert await queued_ids(queues, urls) == Counter(message_id for _, message_id in answers)

"""Failing fast when the queue server is dead (api.enqueue.circuit, api.enqueue.gateway), and bad
input that is not an outage (gomailpy.email.charset, api.responses).

The queue server is reached through a door the test controls: `refuse` (nothing listens),
`silent` (accepts and reads every request, never answers) or `forward` (to the test bed's
LocalStack). No test asserts a time: what shows the answer did not wait for the queues is that no
queue call was made while the circuits were open (botocore's event hooks count the calls the app
made; the silent door counts those it received). Without the enqueue deadline a request to the
silent door would wait 2 attempts x 5 s per queue, longer than the test's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from api.app import create_app
from api.enqueue.circuit import MAX_RETRY_AFTER_S, QueueCircuit
from api.enqueue.gateway import QueueGateway, refused_for_contents
from api.keys import GATEWAY
from gomailpy.errors import UnqueueableEmailError
from gomailpy.queues.sqs import queue_name
from gomailpy_local.localstack import free_port
from tests.support import Client, StartClient, create_queues, email_request, make_settings

UNAVAILABLE = {"errors": {"base": "Service unavailable"}}
Mode = Literal["refuse", "silent", "forward"]
_TARGET = re.compile(rb"x-amz-target:\s*AmazonSQS\.(\w+)", re.IGNORECASE)


class QueueServerDoor:
    """127.0.0.1:port in front of the queue server, in one of three modes (see the module)."""

    def __init__(self, target_port: int | None = None) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.received: list[str] = []  # SQS actions read in silent mode, in order
        self._mode: Mode = "refuse"
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def set(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "refuse":
            await self.close()
        elif self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._held):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        self._held.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        if self._mode == "silent":
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while head := await reader.readuntil(b"\r\n\r\n"):
                    target = _TARGET.search(head)
                    self.received.append(target.group(1).decode() if target else "?")
                    length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                    await reader.readexactly(int(length.group(1)) if length else 0)
            return
        assert self.target_port is not None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._held.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@dataclass(eq=False)  # hashable: botocore keys handlers by identity
class SendCalls:
    """SendMessage/SendMessageBatch calls the app's SQS client made."""

    made: list[str] = field(default_factory=list)

    def __call__(self, params: Mapping[str, Any], **_: Any) -> None:
        self.made.append(str(params["QueueUrl"]))


def count_send_calls(client: Client) -> SendCalls:
    calls = SendCalls()
    events = client.app[GATEWAY].queues.client.meta.events
    for operation in ("SendMessage", "SendMessageBatch"):
        events.register(f"before-parameter-build.sqs.{operation}", calls)
    return calls


@pytest.fixture
async def door() -> Any:
    gate = QueueServerDoor()
    yield gate
    await gate.close()


async def start_api(start_client: StartClient, endpoint: str, **queues: Any) -> Client:
    settings = make_settings(
        endpoint,
        # Probed often, so the circuits open without waiting for a request; short deadline.
        api={"enqueue_deadline_s": 1.0, "depth_refresh_s": 0.2},
        **({"queues": queues} if queues else {}),
    )
    return await start_client(create_app(settings))


async def wait_all_open(client: Client, open_: bool = True) -> None:
    gateway: QueueGateway = client.app[GATEWAY]
    async with asyncio.timeout(8):  # a hang guard, not a timing assertion
        while not all(state.circuit_open == open_ for state in gateway.states()):
            await asyncio.sleep(0.05)


async def post(client: Client, body: Any = None) -> tuple[int, Any, Mapping[str, str]]:
    response = await client.post("/email/send", json=body or email_request())
    return response.status, await response.json(), response.headers


# -- every queue down ---------------------------------------------------------------------------


async def test_a_server_that_never_answers_gets_no_more_calls_once_known_down(
    door: QueueServerDoor, start_client: StartClient
) -> None:
    await door.set("silent")
    urls = [f"{door.url}/000000000000/q-{n}" for n in (1, 2)]  # URLs: no GetQueueUrl needed
    client = await start_api(start_client, door.url, urls=urls)
    calls = count_send_calls(client)

    # Before anything is known, a request waits for the queues, but only up to the deadline.
    status, body, headers = await post(client)
    assert (status, body) == (503, UNAVAILABLE)
    assert int(headers["Retry-After"]) >= 1

    await wait_all_open(client)
    made, received = len(calls.made), door.received.count("SendMessageBatch")
    for _ in range(5):
        status, body, headers = await post(client)
        assert (status, body) == (503, UNAVAILABLE)
        assert 1 <= int(headers["Retry-After"]) <= MAX_RETRY_AFTER_S
    # Answered without a single queue call: nothing to wait for.
    assert len(calls.made) == made
    assert door.received.count("SendMessageBatch") == received
    assert "GetQueueAttributes" in door.received  # the probes go on meanwhile
    readiness = await client.get("/readyz")
    assert readiness.status == 503


async def test_a_server_that_refuses_connections_is_answered_503_without_calls(
    door: QueueServerDoor, start_client: StartClient
) -> None:
    client = await start_api(start_client, door.url)  # the door refuses: nothing listens
    calls = count_send_calls(client)
    await wait_all_open(client)
    made = len(calls.made)

    for _ in range(5):
        status, body, headers = await post(client)
        assert (status, body) == (503, UNAVAILABLE)
        assert int(headers["Retry-After"]) >= 1
    assert len(calls.made) == made


async def test_a_probe_closes_the_circuit_when_the_queues_answer_again(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    door = QueueServerDoor(target_port=int(sqs_endpoint.rsplit(":", 1)[1]))
    try:
        client = await start_api(start_client, door.url)
        names = [state.name for state in client.app[GATEWAY].states()]
        await create_queues(make_settings(sqs_endpoint, queues={"urls": names}))
        await wait_all_open(client)
        status, _, headers = await post(client)
        assert status == 503 and "Retry-After" in headers

        await door.set("forward")
        await wait_all_open(client, open_=False)  # closed by the refresher's probe
        status, body, _ = await post(client)
        assert status == 200, body
        readiness = await client.get("/readyz")
        assert readiness.status == 200
    finally:
        await door.close()


async def test_the_first_request_after_an_outage_is_accepted_without_waiting_for_a_probe(
    sqs_endpoint: str, start_client: StartClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No scheduled probe for a minute: only the probe a request asks for can close a circuit.
    monkeypatch.setattr("api.enqueue.gateway.PROBE_EVERY_S", 60.0)
    # a loaded machine: a generous bound
    monkeypatch.setattr("api.enqueue.gateway.PROBE_WAIT_S", 5.0)
    door = QueueServerDoor(target_port=int(sqs_endpoint.rsplit(":", 1)[1]))
    try:
        settings = make_settings(door.url, api={"enqueue_deadline_s": 5.0, "depth_refresh_s": 60})
        client = await start_client(create_app(settings))
        await create_queues(make_settings(sqs_endpoint, queues={"urls": settings.queues.urls}))
        async with asyncio.timeout(8):  # a hang guard: requests open the circuits
            while not all(state.circuit_open for state in client.app[GATEWAY].states()):
                assert (await post(client))[0] == 503

        await door.set("forward")
        status, body, _ = await post(client)
        assert status == 200, body
    finally:
        await door.close()


async def test_one_silent_queue_does_not_use_up_the_deadline_of_the_others(
    sqs_endpoint: str, door: QueueServerDoor, start_client: StartClient
) -> None:
    # One queue behind a door that never answers, one real: each try gets a share of the
    # deadline, so the real queue is still tried, and takes the email.
    await door.set("silent")
    real = (await create_queues(make_settings(sqs_endpoint, queue_count=1)))[0]
    silent = f"{door.url}/000000000000/{queue_name(real)}-silent"
    settings = make_settings(
        sqs_endpoint,
        api={"enqueue_deadline_s": 1.0, "queue_choice": "round-robin", "depth_refresh_s": 60},
        queues={"urls": [silent, real]},
    )
    client = await start_client(create_app(settings))
    statuses = [(await post(client))[0] for _ in range(2)]  # round-robin: one starts silent
    assert statuses == [200, 200]


# -- bad input is not an outage -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["body", "subject", "fromName", "toName"])
async def test_a_character_sqs_refuses_is_422_naming_the_field_never_503(
    field: str, sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint)
    await create_queues(settings)
    client = await start_client(create_app(settings))
    status, body, _ = await post(client, email_request(**{field: "a\ufffeb"}))
    assert status == 422
    assert list(body["errors"]) == [field]
    assert "U+FFFE" in body["errors"][field]
    # Controls JSON escapes travel fine: SQS takes them.
    status, body, _ = await post(client, email_request(**{field: "bell\x07 tab\t"}))
    assert status == 200, body


async def test_a_queue_refusing_the_contents_is_400_and_the_circuit_stays_closed(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, queue_count=2)
    await create_queues(settings)
    client = await start_client(create_app(settings))
    gateway: QueueGateway = client.app[GATEWAY]
    calls = count_send_calls(client)
    # Past validation on purpose (as a queue written to by another client could hold it):
    # LocalStack refuses the raw U+FFFF with InvalidMessageContents.
    for _ in range(3):
        with pytest.raises(UnqueueableEmailError):
            await gateway.enqueue('{"x": "\uffff"}')
    assert len(calls.made) == 3  # one queue each: the next queue would refuse it too
    assert not any(state.circuit_open for state in gateway.states())
    status, _, _ = await post(client)
    assert status == 200


# -- the circuit, without I/O -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "open_", "retry_after"),
    [
        ([], False, 1),
        (["fail"], False, 1),
        (["fail", "fail"], True, 1),
        (["fail", "ok", "fail"], False, 1),
        (["fail", "fail", "ok"], False, 1),
        (["fail", "fail", "wait 7.5"], True, 8),
        (["fail", "fail", "wait 600"], True, MAX_RETRY_AFTER_S),
        (["fail", "fail", "fail", "wait 3"], True, 3),
    ],
)
def test_circuit(events: list[str], open_: bool, retry_after: int) -> None:
    circuit, now = QueueCircuit(), 100.0
    for event in events:
        if event == "fail":
            circuit.record_failure(now)
        elif event == "ok":
            circuit.record_success(now)
        else:
            now += float(event.split()[1])
    assert circuit.is_open is open_ and circuit.allows() is not open_
    assert circuit.retry_after_s(now) == retry_after


def test_circuit_reports_the_changes_only() -> None:
    circuit = QueueCircuit(open_after=1)
    assert circuit.record_failure(1.0) is True
    assert circuit.record_failure(2.0) is False
    assert circuit.record_success(3.0) is True
    assert circuit.record_success(4.0) is False


@pytest.mark.parametrize(
    ("reason", "contents"),
    [
        ("InvalidMessageContents: Invalid characters found.", True),
        ("AWS.SimpleQueueService.InvalidMessageContents: x", True),
        ("MessageTooLong: too long", True),
        ("BatchRequestTooLong: too long", True),
        ("AWS.SimpleQueueService.NonExistentQueue: gone", False),
        ("EndpointConnectionError: Could not connect", False),
        ("no answer within 0.50 s", False),
        ("InternalError: InvalidMessageContents later in the text", False),
    ],
)
def test_which_refusals_concern_the_contents(reason: str, contents: bool) -> None:
    assert refused_for_contents(reason) is contents

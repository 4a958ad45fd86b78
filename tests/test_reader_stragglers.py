"""The reader hands each receive's messages on as it answers: a slow receive (the queue server's
tail) does not hold the other receives' messages, unsent, until it answers.

No timing: the slow receive answers only once messages from the others were handed on (reader)
or sent (a whole node on LocalStack); waiting for the slowest would never get there, and the
test's guard would give up and fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gomailpy.providers.base import SendResult
from gomailpy.queues.sqs import QueueDepth, ReceivedMessage, create_queue_client
from pipeline.node import PipelineNode
from pipeline.reading.reader import QueueReader
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, make_settings

GUARD_S = 20  # only against a hang: a node that waits for its slowest receive never finishes


class OneSlowReceive:
    """A queue of 30 messages whose second receive answers only when `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.order: list[str] = []

    async def depth(self, url: str) -> QueueDepth:
        return QueueDepth(visible=30, in_flight=0, delayed=0)

    async def receive(self, url: str, *, max_messages: int, wait_time_s: int) -> list[Any]:
        self.calls += 1
        call = self.calls
        if call == 2:
            await self.release.wait()
            self.order.append("slow receive answered")
        return [
            ReceivedMessage(url, f"m{call}-{n}", f"r{call}-{n}", "{}", 1)
            for n in range(max_messages)
        ]


async def test_the_other_receives_messages_are_handed_on_while_one_is_slow() -> None:
    queues = OneSlowReceive()
    reader = QueueReader(queues, max_readers_per_queue=10, idle_wait_s=1)  # type: ignore[arg-type]
    handed_on: list[list[ReceivedMessage]] = []

    def on_batch(batch: list[ReceivedMessage]) -> None:
        handed_on.append(batch)
        queues.order.append(f"handed on {batch[0].sqs_message_id.split('-')[0]}")
        if len(handed_on) == 2:  # both fast receives: only now may the slow one answer
            queues.release.set()

    async with asyncio.timeout(GUARD_S):
        pool = await reader.read(["q"], capacity=30, on_batch=on_batch)
    assert queues.order == ["handed on m1", "handed on m3", "slow receive answered", "handed on m2"]
    assert sum(len(b) for b in handed_on) == 30
    assert pool.messages == []  # all handed on, none left for the pool's end


class FirstSendRecorded(ScriptedProvider):
    def __init__(self, name: str, sent: asyncio.Event, order: list[str]) -> None:
        super().__init__(name)
        self._sent = sent
        self._order = order

    async def send(self, envelope: Any) -> SendResult:
        result = await super().send(envelope)
        if not self._sent.is_set():
            self._order.append("sent")
            self._sent.set()
        return result


async def test_a_node_sends_while_one_receive_is_still_out(sqs_endpoint: str) -> None:
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 30, "wait_time_s": 1},
        pipeline={"min_iteration_duration_s": 0},
    )
    await create_queues(settings)
    ids = await enqueue(settings, 40)
    sent = asyncio.Event()
    order: list[str] = []
    provider = FirstSendRecorded("a", sent, order)
    async with create_queue_client(settings) as queues:
        receive = queues.receive
        held: list[bool] = []

        async def one_slow_receive(url: str, **kwargs: Any) -> list[ReceivedMessage]:
            messages = await receive(url, **kwargs)
            if messages and not held:  # the first receive that brings mail answers last
                held.append(True)
                await sent.wait()  # released by a send of another receive's message
                order.append(f"slow receive answered with {len(messages)}")
            return messages

        queues.receive = one_slow_receive  # type: ignore[method-assign,assignment]
        async with PipelineNode(settings, queues, {"a": provider}) as node:
            running = asyncio.create_task(node.run())
            try:
                async with asyncio.timeout(GUARD_S):
                    while len(provider.accepted) < len(ids):
                        await asyncio.sleep(0.01)
            finally:
                node.stop()
                await running
    assert order[0] == "sent" and order[1].startswith("slow receive answered")
    assert sorted(provider.accepted) == sorted(ids)

"""A stopping node lets its open long polls answer instead of cutting them.

SQS (LocalStack alike) goes on serving a long poll after the client cancels it: mail that
arrives in the poll's remaining wait goes to the closed connection and stays invisible for a
whole visibility timeout (aws-sdk-net#1680). A rolling deploy, or `bench.sqs_calls` starting its
next node right after stopping one, met exactly that: 3,000 emails took 60 s, the visibility
timeout, instead of 3 s. Here the mail arrives after `stop()`, while the poll is open; it must
be back on the queue at once, neither sent by the stopping node nor held for 60 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gomailpy.email.envelope import Envelope
from gomailpy.queues.sqs import ReceivedMessage, create_queue_client
from pipeline.node import PipelineNode
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, make_settings

WAIT_S = 3  # the idle long poll's wait: the stop happens inside it
GUARD_S = 20  # only against a hang


async def test_mail_that_reaches_a_stopping_nodes_open_poll_goes_back_at_once(
    sqs_endpoint: str,
) -> None:
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 60, "wait_time_s": WAIT_S},
        pipeline={"min_iteration_duration_s": 0},
    )
    [url] = await create_queues(settings)
    provider = ScriptedProvider("a")
    async with create_queue_client(settings) as queues:
        receive = queues.receive
        polling = asyncio.Event()

        async def watched_receive(url: str, **kwargs: Any) -> list[ReceivedMessage]:
            if kwargs.get("wait_time_s") == WAIT_S:
                polling.set()  # an idle long poll is on its way to the queue server
            return await receive(url, **kwargs)

        queues.receive = watched_receive  # type: ignore[method-assign,assignment]
        async with asyncio.timeout(GUARD_S):
            async with PipelineNode(settings, queues, {"a": provider}) as node:
                running = asyncio.create_task(node.run())
                await polling.wait()
                await asyncio.sleep(0.3)  # the poll has reached the server and waits there
                node.stop()
                [sent_id] = await enqueue(settings, 1)  # arrives while the poll is open
                await running
            queues.receive = receive  # type: ignore[method-assign]
            # Visible again at once: a receive that does not wait finds it.
            found = await queues.receive(url, wait_time_s=1)
    assert provider.accepted == []  # the stopping node did not send it
    [message] = found
    assert Envelope.decode(message.body).id == sent_id
    assert message.receive_count == 2  # the stopping node's poll had it, and gave it back

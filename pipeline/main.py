"""Run one pipeline node as a process: `pipeline --config FILE` (or `gomail pipeline`).

Opens everything the node needs in one AsyncExitStack (queue client, providers, admin server),
stops reading on SIGTERM or SIGINT, finishes the sends in flight, releases the rest, exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from gomailpy.config.settings import Settings
from gomailpy.operating.loop_watch import freeze_heap, watch_event_loop
from gomailpy.providers import open_providers
from gomailpy.queues.claim_check import open_claim_check
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries import open_delivery_store
from gomailpy.store.items import open_item_table
from pipeline.admin import start_admin
from pipeline.feedback import open_feedback
from pipeline.node import PipelineNode
from pipeline.prepare.pacing import open_rates
from pipeline.steering import open_steering
from pipeline.steps import create_steps
from pipeline.webhooks import open_webhooks

log = logging.getLogger("gomailpy.pipeline")


async def run_node(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(watch_event_loop())  # loop lag and GC pauses, /metrics
        queues = await stack.enter_async_context(create_queue_client(settings))
        providers = await open_providers(stack, settings)
        # steering.rates: pipeline.prepare.pacing
        rates = await open_rates(stack, settings, providers)
        if not providers:
            log.error("no provider is enabled in the configuration: messages will wait")
        status = await open_delivery_store(stack, settings)
        claim_check = await open_claim_check(stack, settings)
        node = PipelineNode(
            settings, queues, rates.providers, status=status, claim_check=claim_check
        )
        feedback = await open_feedback(stack, settings, queues, node, status)  # events
        await open_webhooks(stack, settings, queues)  # delivers the webhook queue
        table = await open_item_table(stack, settings)  # templates, schedules
        await open_steering(stack, settings, node, rates=rates)  # controls, rate shares
        node.steps = create_steps(  # schedule, suppress, render, pace: pipeline.steps
            settings,
            queues,
            table=table,
            status=status,
            suppression=feedback.screen,
            rates=rates,
            usable=node.usable,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, node.stop)
        await start_admin(stack, node, settings.pipeline.admin_host, settings.pipeline.admin_port)
        await node.resolve_queues()
        freeze_heap()  # started: what startup built is kept for the process's life
        log.info(
            "pipeline node started: queues %s; providers %s",
            ", ".join(settings.queues.urls),
            ", ".join(providers) or "none",
        )
        await node.run()
        log.info("pipeline node stopped")

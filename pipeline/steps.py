"""The steps between receiving a batch and splitting it across the providers: one ordered list,
built here and nowhere else, read top to bottom.

    node.steps = create_steps(settings, queues, table=table, status=status,
                              suppression=feedback.screen, rates=rates, usable=node.usable)

A node's batch goes (pipeline.node.PipelineNode.dispatch):

    decode       pipeline.reading.intake       envelopes read; sent before: deleted  (always)
    schedule     pipeline.prepare.schedule     not yet due: back on its queue; cancelled: dropped
    suppress     pipeline.prepare.suppress     suppressed recipients out; none left: failed
    render       pipeline.prepare.render       stored templates rendered: subject, HTML, text
    unsubscribe  pipeline.prepare.unsubscribe  List-Unsubscribe headers (`bulk`), links signed
    pace         pipeline.prepare.pacing       held while the rate-limited providers are booked up
    split        pipeline.sending.splitter     shares by health, weights, controls  (always)

Each step takes the batch as it stands (`Taken`: the items still to send, and the plan for the
rest) and returns it; an item a step takes out is settled by that plan, never seen by a later
step. A step that is not configured (no suppression list, no rate) is left out. No step reaches
back into an earlier one: rendering after suppression never renders for a dropped recipient,
no unsubscribe token is signed for a dropped email, pacing last holds only what will be sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gomailpy.config.settings import Settings
from gomailpy.queues.sqs import QueueClient
from gomailpy.store.deliveries import DeliveryStore
from gomailpy.store.items import ItemTable
from gomailpy.store.templates import TemplateStore
from pipeline.prepare.pacing import Rates
from pipeline.prepare.render import Renderer
from pipeline.prepare.schedule import ScheduleHold
from pipeline.prepare.suppress import RecipientScreen
from pipeline.prepare.unsubscribe import UnsubscribeHeaders
from pipeline.sending.retry import configured_retry_delay_s
from pipeline.sending.settlement import Step


def create_steps(
    settings: Settings,
    queues: QueueClient,
    *,
    table: ItemTable | None = None,
    status: DeliveryStore | None = None,
    suppression: RecipientScreen | None = None,
    rates: Rates | None = None,
    usable: Callable[[], list[str]] = list,
) -> list[Step]:
    """The node's steps in order (see the module docstring). `table`: templates and schedules
    (None with `status.backend: none`); `suppression`: pipeline.feedback's step; `rates`: the
    paced providers (pipeline.prepare.pacing); `usable`: the providers the split may use now."""
    templates = TemplateStore(table) if table is not None else None
    retry_delay_s = max(1, math.ceil(configured_retry_delay_s(1, settings.pipeline)))
    ordered: list[Step | None] = [
        ScheduleHold(queues, table),  # schedule
        suppression,  # suppress
        Renderer(templates, status, retry_delay_s=retry_delay_s),  # render
        UnsubscribeHeaders(settings),  # unsubscribe
        rates.gate(usable) if rates is not None else None,  # pace
    ]
    return [step for step in ordered if step is not None]

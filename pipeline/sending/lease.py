"""The node's hold on the messages it received and has not settled yet: a lease it keeps.

    leases = Leases(queues, visibility_timeout_s=60, send_s=10)
    leases.hold(messages)                        # as a batch is dispatched
    await leases.ensure(messages, need_s=11)     # renew now those with less than 11 s left
    await leases.ready(message, need_s=11)       # the last check before a send starts
    leases.drop(messages)                        # settled: deleted or released
    async with leases: ...                       # the heartbeat runs inside (or start/aclose)

A message is ours only until its visibility timeout runs out; then SQS gives it to another node,
which sends it. So every deadline counts from when the receive that brought the message was
sent (`ReceivedMessage.received_at`, never from when the batch was dispatched, which may be
much later: an idle long poll can answer while the node is busy), and:
- a heartbeat renews, every visibility_timeout/6, the messages held for more than a third of
  it (or sooner when a short timeout leaves less than a send's time limit until the next beat;
  one ChangeMessageVisibilityBatch per queue and ten messages), each renewal counted from when
  its call was sent;
- a send starts only while its lease has at least the send's whole time limit left
  (`may_start`), so a send ends before another node can have the message; a message whose lease
  is too short is renewed first (`ensure`), and released unsent when that fails;
- a lease that ran out, or whose renewal SQS refused, is *broken*: never sent, and never
  released either (its receipt handle may act on another node's hold): it comes back by itself.
A node paused (SIGSTOP) or starved of CPU for longer than the visibility timeout therefore finds
its leases run out when it resumes and sends none of those messages; the node that received
them meanwhile does. A send a provider had already accepted before the pause comes back too;
with the delivery store on, the intent the node wrote before it makes the other node wait for
its outcome (gomailpy.store.deliveries.intents; docs/tests.md has the fault table).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Self

from gomailpy import metrics
from gomailpy.errors import QueueError
from gomailpy.lifecycle import cancel_and_wait
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, ReceivedMessage, queue_name

log = logging.getLogger("gomailpy.pipeline")

# A renewal must reach SQS before the lease runs out: leases with less left than this are not
# renewed (they are as good as gone) and no send starts on them.
RENEW_MARGIN_S = 0.5


@dataclass(slots=True)
class _Lease:
    message: ReceivedMessage
    until: float  # time.monotonic() when SQS may give the message to another node
    broken: bool = False


class Leases:
    """Leases on received messages, kept alive by a heartbeat while the node holds them."""

    def __init__(
        self,
        queues: QueueClient,
        visibility_timeout_s: float,
        send_s: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queues = queues
        self._visibility_s = visibility_timeout_s
        self._clock = clock
        self._interval_s = max(0.2, visibility_timeout_s / 6)
        # Renew once a third of the lease is gone, or earlier when what is left would not
        # outlast a whole send (`send_s`) until the next beat.
        self._renew_below_s = max(
            visibility_timeout_s * 2 / 3, send_s + RENEW_MARGIN_S + self._interval_s
        )
        self._held: dict[str, _Lease] = {}  # receipt handle -> lease
        self._heartbeat: asyncio.Task[None] | None = None
        self.renewals = 0  # messages renewed (for tests and reports)
        self.broken = 0  # leases found run out or refused

    async def __aenter__(self) -> Self:
        self.start()
        return self

    def start(self) -> None:
        """Start the heartbeat (again after `aclose`); a no-op while it runs."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat())

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            await cancel_and_wait([self._heartbeat])
            self._heartbeat = None

    # -- holding -----------------------------------------------------------------------------

    def hold(self, messages: Iterable[ReceivedMessage]) -> None:
        """Keep these messages' leases (those already held stay as they are)."""
        now = self._clock()
        for message in messages:
            if message.receipt_handle not in self._held:
                until = (message.received_at or now) + self._visibility_s
                self._held[message.receipt_handle] = _Lease(message, until)

    def drop(self, messages: Iterable[ReceivedMessage]) -> None:
        for message in messages:
            self._held.pop(message.receipt_handle, None)

    def __len__(self) -> int:
        return len(self._held)

    def remaining_s(self, message: ReceivedMessage) -> float:
        """Seconds left on the lease; -inf when broken; inf for a message not held here (the
        node's own tools, e.g. `run_iteration` callers that never hold)."""
        lease = self._held.get(message.receipt_handle)
        if lease is None:
            return math.inf
        if lease.broken:
            return -math.inf
        left = lease.until - self._clock()
        if left <= RENEW_MARGIN_S:
            self._break(lease, "its lease ran out")
            return -math.inf
        return left

    def valid(self, message: ReceivedMessage) -> bool:
        """Whether the message is still ours to release or delete."""
        return self.remaining_s(message) > 0

    def may_start(self, message: ReceivedMessage, need_s: float) -> bool:
        """Whether a send bounded by `need_s` seconds can end before the lease does."""
        return self.remaining_s(message) >= need_s + RENEW_MARGIN_S

    async def ready(self, message: ReceivedMessage, need_s: float) -> bool:
        """`may_start`, renewing the lease first when it is alive but too short (a send that
        waited for its provider's slot): one call rather than a release and a redelivery."""
        if self.may_start(message, need_s):
            return True
        if self.remaining_s(message) <= 0:
            return False
        await self._renew([message])
        return self.may_start(message, need_s)

    # -- renewing ----------------------------------------------------------------------------

    async def ensure(self, messages: Sequence[ReceivedMessage], need_s: float) -> None:
        """Renew now the leases of `messages` with less than `need_s` seconds left."""
        short = [m for m in messages if 0 < self.remaining_s(m) < need_s + RENEW_MARGIN_S]
        if short:
            await self._renew(short)

    async def renew_due(self) -> None:
        """Renew the leases held for more than a third of the visibility timeout."""
        due = [
            lease.message
            for lease in list(self._held.values())
            if 0 < self.remaining_s(lease.message) < self._renew_below_s
        ]
        if due:
            await self._renew(due)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.renew_due()
            except Exception:  # the heartbeat must outlive any surprise; sends check leases
                log.exception("lease heartbeat failed")

    async def _renew(self, messages: Sequence[ReceivedMessage]) -> None:
        by_queue: dict[str, list[ReceivedMessage]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue_url].append(message)
        visibility = math.ceil(self._visibility_s)
        await asyncio.gather(
            *(self._renew_queue(url, batch, visibility) for url, batch in by_queue.items())
        )

    async def _renew_queue(
        self, url: str, messages: list[ReceivedMessage], visibility: int
    ) -> None:
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            asked_at = self._clock()
            try:
                result = await self._queues.change_visibility_batch(
                    url, [(m.receipt_handle, visibility) for m in chunk]
                )
            except QueueError as exc:
                # Not refused, not renewed: the old deadline stands and sends check it.
                log.warning("could not renew leases: %s", exc, extra={"queue": queue_name(url)})
                continue
            refused = 0
            for index, message in enumerate(chunk):
                lease = self._held.get(message.receipt_handle)
                if lease is None or lease.broken:
                    continue
                if str(index) in result.ok:
                    lease.until = asked_at + visibility
                    self.renewals += 1
                elif str(index) in result.failed:
                    # Mostly a message deleted meanwhile (sent and settled); else not ours now.
                    self._break(lease, "")
                    refused += 1
            if refused:
                log.info(
                    "SQS refused %d lease renewal(s)", refused, extra={"queue": queue_name(url)}
                )

    def _break(self, lease: _Lease, why: str) -> None:
        if lease.broken:
            return
        lease.broken = True
        self.broken += 1
        metrics.PIPELINE_LEASES_LOST.inc()
        if why:
            log.warning(
                "message %s: %s; it will not be sent here",
                lease.message.sqs_message_id,
                why,
                extra={"queue": queue_name(lease.message.queue_url)},
            )

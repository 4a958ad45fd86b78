"""The dead-letter queues, both sides: what the pipeline puts there and why, and how an operator
looks at it and puts it back (`gomail dlq list`, `gomail dlq redrive`).

Messages reach `<queue>-dlq` two ways: SQS moves a message there after `max_receive_count`
deliveries (retries that never succeeded), and the pipeline copies a message there with
`dead_letter`, the reason riding along as message attributes, when a provider refused it for
good or it could not be read. The pipeline deletes the original only once the copy is there (a
crash in between gives a duplicate in the dead-letter queue, never a loss).

Listing peeks: messages are received with a short visibility and released again, so a listing
changes nothing. Redriving sends each message back to its source queue and only then deletes it
from the dead-letter queue (a crash in between gives a duplicate, never a loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gomailpy.email.envelope import Envelope
from gomailpy.errors import EnvelopeError
from gomailpy.queues.sqs import QueueClient, ReceivedMessage, queue_name

# Attribute names on the messages the pipeline dead-letters.
FAILURE_KIND = "gomailpy-failure"
FAILURE_REASON = "gomailpy-reason"
FAILURE_PROVIDER = "gomailpy-provider"
FAILURE_SOURCE = "gomailpy-source-queue"
MAX_REASON = 1000  # characters of the reason kept on the message
PEEK_VISIBILITY_S = 30


class FailureKind(StrEnum):
    """Why a message is in a dead-letter queue (the FAILURE_KIND attribute)."""

    PERMANENT = "permanent"  # a provider refused the email for good
    UNREADABLE = "unreadable"  # no envelope could be read from the message
    RETRIES_EXHAUSTED = "retries-exhausted"  # SQS moved it after max_receive_count deliveries


# -- write side: the pipeline --------------------------------------------------------------------


async def dead_letter(
    queues: QueueClient,
    message: ReceivedMessage,
    kind: FailureKind,
    reason: str,
    provider: str = "",
) -> None:
    """Copy `message`, with why it failed, to its queue's dead-letter queue. Raises QueueError;
    the caller deletes the original only after this returned."""
    dlq = await queues.dead_letter_url(message.queue_url)
    await queues.send(
        dlq,
        message.body,
        attributes={
            FAILURE_KIND: kind.value,
            FAILURE_REASON: reason[:MAX_REASON],
            FAILURE_PROVIDER: provider,
            FAILURE_SOURCE: queue_name(message.queue_url),
        },
    )


# -- read side: the operator ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq: str
    message: ReceivedMessage
    kind: str  # a FailureKind value (kept as text: an older node may have written another)
    reason: str
    provider: str
    message_id: str | None  # the email's messageId, if the body is readable
    recipients: list[str]
    subject: str | None

    @classmethod
    def of(cls, dlq: str, message: ReceivedMessage) -> DeadLetter:
        attributes = message.attributes
        try:
            envelope: Envelope | None = Envelope.decode(message.body)
        except EnvelopeError:
            envelope = None
        return cls(
            dlq=dlq,
            message=message,
            kind=attributes.get(FAILURE_KIND, FailureKind.RETRIES_EXHAUSTED.value),
            reason=attributes.get(FAILURE_REASON, "delivered too many times without success"),
            provider=attributes.get(FAILURE_PROVIDER, ""),
            message_id=envelope.id if envelope else None,
            recipients=[a.email for a in envelope.email.recipients] if envelope else [],
            subject=envelope.email.subject if envelope else None,
        )


async def _dead_letter_urls(queues: QueueClient) -> list[tuple[str, str]]:
    """(source queue URL, its dead-letter queue URL) for every configured queue."""
    pairs = []
    for url in await queues.resolve_all():
        pairs.append((url, await queues.dead_letter_url(url)))
    return pairs


async def _drain_peek(queues: QueueClient, dlq: str, limit: int) -> list[ReceivedMessage]:
    seen: dict[str, ReceivedMessage] = {}
    while len(seen) < limit:
        batch = await queues.receive(dlq, wait_time_s=0, visibility_timeout_s=PEEK_VISIBILITY_S)
        fresh = [m for m in batch if m.sqs_message_id not in seen]
        if not fresh:
            break
        seen.update((m.sqs_message_id, m) for m in fresh)
    return list(seen.values())[:limit]


async def list_dead_letters(queues: QueueClient, limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` dead letters per dead-letter queue, left where they are."""
    found: list[DeadLetter] = []
    for _, dlq in await _dead_letter_urls(queues):
        messages = await _drain_peek(queues, dlq, limit)
        found += [DeadLetter.of(dlq, m) for m in messages]
        if messages:
            await queues.change_visibility_batch(dlq, [(m.receipt_handle, 0) for m in messages])
    return found


async def redrive(
    queues: QueueClient,
    *,
    include_unreadable: bool = False,
    limit: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, int]:
    """Move dead letters back to their source queues; return (moved, skipped).

    Unreadable messages stay unless `include_unreadable` (they would only come back)."""
    moved = skipped = 0
    for source, dlq in await _dead_letter_urls(queues):
        skipped_here: list[ReceivedMessage] = []
        while limit is None or moved < limit:
            batch = await queues.receive(dlq, wait_time_s=0, visibility_timeout_s=60)
            if not batch:
                break
            letters = [DeadLetter.of(dlq, m) for m in batch]
            keep = [
                letter
                for letter in letters
                if include_unreadable or letter.kind != FailureKind.UNREADABLE
            ]
            if limit is not None:
                keep = keep[: limit - moved]
            kept = {id(letter.message) for letter in keep}
            skipped_here += [m for m in batch if id(m) not in kept]
            if not keep:
                continue
            sent = await queues.send_batch(
                source, [(str(i), letter.message.body) for i, letter in enumerate(keep)]
            )
            back = [keep[int(i)].message.receipt_handle for i in sent.ok]
            if back:
                await queues.delete_batch(dlq, back)
            moved += len(back)
            progress(moved)
        if skipped_here:
            await queues.change_visibility_batch(
                dlq, [(m.receipt_handle, 0) for m in skipped_here]
            )
        skipped += len(skipped_here)
    return moved, skipped


def describe(letter: DeadLetter) -> str:
    who = ", ".join(letter.recipients) or "-"
    via = f" at {letter.provider}" if letter.provider else ""
    return (
        f"{letter.message_id or '(unreadable)'}  {queue_name(letter.dlq)}  {letter.kind}{via}:"
        f" {letter.reason}  to={who}"
    )

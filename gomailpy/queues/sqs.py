"""The SQS queue layer: one long-lived aiobotocore client per process, batch calls throughout.

    async with create_queue_client(settings) as queues:
        url = await queues.resolve("gomailpy-1")
        await queues.send_batch(url, [("0", body)])
        for message in await queues.receive(url):
            ...
        await queues.delete_batch(url, [message.receipt_handle])

Every failure of a whole call is raised as `QueueError` naming the queue and the operation.
Batch calls can also fail per entry: those come back in the result, never silently dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.config.settings import QueueSettings, Settings
from gomailpy.errors import QueueError
from gomailpy.queues.aws import LONG_POLL_MAX_S, AwsResource, open_aws_client

MAX_BATCH = 10  # SQS's limit for every batch call and for one receive
DLQ_RETENTION_S = 14 * 24 * 3600  # the longest SQS allows: time for an operator to look


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    queue_url: str
    sqs_message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # 1 on the first delivery
    attributes: dict[str, str] = field(default_factory=dict)  # string message attributes
    # time.monotonic() when the receive that brought it was *sent*: SQS starts the visibility
    # timeout somewhere between that and the answer, so a lease counted from here is never
    # longer than the one SQS gives (however late the answer was read).
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueDepth:
    visible: int
    in_flight: int  # received, not yet deleted or released
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(slots=True)
class BatchResult:
    """Outcome per entry of a batch call: `ok` maps entry id -> SQS message id (or "" for
    deletes/visibility changes), `failed` maps entry id -> reason."""

    ok: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def queue_name(url_or_name: str) -> str:
    """The queue's name, for logs, metrics and errors."""
    return url_or_name.rstrip("/").rsplit("/", 1)[-1]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _chunks(items: Sequence[Any], size: int = MAX_BATCH) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# Failures of a whole call that the queue layer turns into QueueError. OSError covers refused
# and reset connections raised by the HTTP layer before botocore wraps them.
_CALL_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)


class QueueClient(AwsResource):
    """SQS operations over one aiobotocore client; a one-shot async context manager (see
    `gomailpy.queues.aws.AwsResource`)."""

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        super().__init__(client=client)
        self._settings = settings
        self._queue_settings: QueueSettings = settings.queues
        self._urls: dict[str, str] = {}

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        aws = self._settings.aws
        return await open_aws_client(
            stack, "sqs", aws, read_timeout_s=aws.client_timeout_s + LONG_POLL_MAX_S
        )

    @property
    def client(self) -> Any:
        return self._client

    async def _call(self, queue: str, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(**kwargs)
        except _CALL_ERRORS as exc:
            raise QueueError(queue_name(queue), operation, _reason(exc)) from exc

    # -- names and URLs --------------------------------------------------------------------

    async def resolve(self, url_or_name: str) -> str:
        """A queue URL for a configured entry: URLs pass through, names go through GetQueueUrl."""
        if "://" in url_or_name:
            return url_or_name
        if url_or_name not in self._urls:
            answer = await self._call(url_or_name, "get_queue_url", QueueName=url_or_name)
            self._urls[url_or_name] = answer["QueueUrl"]
        return self._urls[url_or_name]

    async def resolve_all(self) -> list[str]:
        return [await self.resolve(entry) for entry in self._queue_settings.urls]

    async def dead_letter_url(self, queue_url: str) -> str:
        return await self.resolve(queue_name(queue_url) + self._queue_settings.dlq_suffix)

    # -- messages --------------------------------------------------------------------------

    async def send(
        self,
        queue_url: str,
        body: str,
        *,
        delay_s: int = 0,
        attributes: dict[str, str] | None = None,
    ) -> str:
        """Send one message (string `attributes` ride along as message attributes); return its
        SQS message id."""
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MessageBody": body,
            "DelaySeconds": delay_s,
        }
        if attributes:
            kwargs["MessageAttributes"] = {
                key: {"DataType": "String", "StringValue": value or "-"}
                for key, value in attributes.items()
            }
        answer = await self._call(queue_url, "send_message", **kwargs)
        return str(answer["MessageId"])

    async def send_batch(self, queue_url: str, entries: Sequence[tuple[str, str]]) -> BatchResult:
        """Send (entry id, body) pairs, up to 10 per SendMessageBatch call."""
        result = BatchResult()
        for chunk in _chunks(entries):
            answer = await self._call(
                queue_url,
                "send_message_batch",
                QueueUrl=queue_url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, body in chunk],
            )
            for ok in answer.get("Successful", []):
                result.ok[ok["Id"]] = ok["MessageId"]
            for failed in answer.get("Failed", []):
                result.failed[failed["Id"]] = f"{failed.get('Code')}: {failed.get('Message', '')}"
        return result

    async def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = MAX_BATCH,
        wait_time_s: int | None = None,
        visibility_timeout_s: int | None = None,
    ) -> list[ReceivedMessage]:
        """Receive up to `max_messages` (≤ 10), long polling for `wait_time_s` when empty."""
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": min(max_messages, MAX_BATCH),
            "WaitTimeSeconds": (
                self._queue_settings.wait_time_s if wait_time_s is None else wait_time_s
            ),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout_s
        asked_at = time.monotonic()
        answer = await self._call(queue_url, "receive_message", **kwargs)
        return [
            ReceivedMessage(
                queue_url=queue_url,
                sqs_message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                attributes={
                    key: str(value.get("StringValue", ""))
                    for key, value in m.get("MessageAttributes", {}).items()
                },
                received_at=asked_at,
            )
            for m in answer.get("Messages", [])
        ]

    async def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchResult:
        """Delete messages, 10 per call. Entry ids in the result are indexes into the input."""
        result = BatchResult()
        indexed = list(enumerate(receipt_handles))
        for chunk in _chunks(indexed):
            answer = await self._call(
                queue_url,
                "delete_message_batch",
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in chunk],
            )
            for ok in answer.get("Successful", []):
                result.ok[ok["Id"]] = ""
            for failed in answer.get("Failed", []):
                result.failed[failed["Id"]] = f"{failed.get('Code')}: {failed.get('Message', '')}"
        return result

    async def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchResult:
        """Set (receipt handle, seconds) visibility: 0 releases a message now, more delays it."""
        result = BatchResult()
        indexed = list(enumerate(changes))
        for chunk in _chunks(indexed):
            answer = await self._call(
                queue_url,
                "change_message_visibility_batch",
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                    for i, (handle, seconds) in chunk
                ],
            )
            for ok in answer.get("Successful", []):
                result.ok[ok["Id"]] = ""
            for failed in answer.get("Failed", []):
                result.failed[failed["Id"]] = f"{failed.get('Code')}: {failed.get('Message', '')}"
        return result

    async def depth(self, queue_url: str) -> QueueDepth:
        """Approximate number of messages: visible, in flight and delayed."""
        answer = await self._call(
            queue_url,
            "get_queue_attributes",
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        attributes = answer.get("Attributes", {})
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    # -- set-up ----------------------------------------------------------------------------

    async def ensure_queue(self, url_or_name: str) -> str:
        """Create a queue and its dead-letter queue with a redrive policy; safe to run again.

        An existing queue gets its attributes brought in line with the settings.
        """
        name = queue_name(url_or_name)
        settings = self._queue_settings
        dlq_url = await self._create_or_update(
            name + settings.dlq_suffix, {"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
        )
        dlq_attributes = await self._call(
            dlq_url, "get_queue_attributes", QueueUrl=dlq_url, AttributeNames=["QueueArn"]
        )
        redrive = {
            "deadLetterTargetArn": dlq_attributes["Attributes"]["QueueArn"],
            "maxReceiveCount": str(settings.max_receive_count),
        }
        url = await self._create_or_update(
            name,
            {
                "VisibilityTimeout": str(settings.visibility_timeout_s),
                "ReceiveMessageWaitTimeSeconds": str(settings.wait_time_s),
                "RedrivePolicy": json.dumps(redrive),
            },
        )
        self._urls[name] = url
        return url

    async def _create_or_update(self, name: str, attributes: dict[str, str]) -> str:
        try:
            answer = await self._client.create_queue(QueueName=name, Attributes=attributes)
            return str(answer["QueueUrl"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "QueueAlreadyExists" not in code and "QueueNameExists" not in code:
                raise QueueError(name, "create_queue", _reason(exc)) from exc
        except _CALL_ERRORS as exc:
            raise QueueError(name, "create_queue", _reason(exc)) from exc
        url = await self.resolve(name)
        await self._call(name, "set_queue_attributes", QueueUrl=url, Attributes=attributes)
        return url


def create_queue_client(settings: Settings, *, client: Any = None) -> QueueClient:
    """A `QueueClient` for `settings`; pass `client` to reuse an aiobotocore SQS client."""
    return QueueClient(settings, client=client)

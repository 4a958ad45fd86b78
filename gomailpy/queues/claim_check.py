"""Emails too large for a queue message: the envelope goes to S3, the queue carries a reference.

    {"v": 1, "id": "<message id>", "created_at": "...", "ref": {"bucket": "b", "key": "k",
     "size": 5242880}}

The API stores an envelope whose encoded size is over `claim_check.threshold_bytes` as one S3
object (the envelope's own JSON, so it reads back exactly as a queued envelope would) and
queues the reference instead. The pipeline loads the object before sending and deletes it once
the email was sent or failed for good (dead-lettered). The reference carries the message id,
so a node can claim the message and see that it was sent without loading the object.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from gomailpy.config.settings import ClaimCheckSettings, Settings
from gomailpy.email.envelope import ENVELOPE_VERSION, Envelope
from gomailpy.errors import ClaimCheckError, EnvelopeError
from gomailpy.queues.aws import AwsResource, open_aws_client

_S3_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class ClaimRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str
    key: str
    size: int


class ReferenceEnvelope(BaseModel):
    """What travels on the queue in place of a large envelope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = ENVELOPE_VERSION
    id: str
    created_at: datetime
    ref: ClaimRef

    def encode(self) -> str:
        return self.model_dump_json()


def decode_message(body: str) -> Envelope | ReferenceEnvelope:
    """A queue message body as an envelope or a reference, or `EnvelopeError`."""
    try:
        raw: Any = json.loads(body)
    except ValueError:
        raw = None
    if isinstance(raw, dict) and "ref" in raw and raw.get("v") == ENVELOPE_VERSION:
        try:
            return ReferenceEnvelope.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise EnvelopeError(f"invalid reference envelope at {where}: {first['msg']}") from None
    return Envelope.decode(body)


def _reason(exc: BaseException) -> tuple[str, bool]:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Error"))
        return f"{code}: {error.get('Message', '')}".rstrip(": "), code in _MISSING
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__), False


class ClaimCheck(AwsResource):
    """S3 operations of the claim check over one long-lived aiobotocore S3 client; a one-shot
    async context manager (see `gomailpy.queues.aws.AwsResource`)."""

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        super().__init__(client=client)
        section: ClaimCheckSettings = settings.claim_check
        if section.bucket is None:
            raise ValueError("claim_check.bucket is not set")
        self._settings = section
        self._aws = settings.aws
        self.bucket: str = section.bucket
        self.threshold_bytes = section.threshold_bytes
        self._prefix = section.prefix

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        section = self._settings
        return await open_aws_client(
            stack, "s3", self._aws, region=section.region, endpoint_url=section.endpoint_url
        )

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(Bucket=self.bucket, **kwargs)
        except _S3_ERRORS as exc:
            reason, missing = _reason(exc)
            raise ClaimCheckError(operation, reason, missing=missing) from exc

    async def ensure_bucket(self) -> None:
        """Create the bucket; safe to run again."""
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            return
        except _S3_ERRORS:
            pass
        kwargs: dict[str, Any] = {}
        region = self._client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._client.create_bucket(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ClaimCheckError("create_bucket", _reason(exc)[0]) from exc
        except _S3_ERRORS as exc:
            raise ClaimCheckError("create_bucket", _reason(exc)[0]) from exc

    def needed(self, encoded: str) -> bool:
        return len(encoded.encode("utf-8")) > self.threshold_bytes

    async def store(self, envelope: Envelope, encoded: str | None = None) -> ReferenceEnvelope:
        """Put the envelope in S3; return the reference to queue instead."""
        data = (encoded if encoded is not None else envelope.encode()).encode("utf-8")
        key = f"{self._prefix}{envelope.id}.json"
        await self._call("put_object", Key=key, Body=data, ContentType="application/json")
        return ReferenceEnvelope(
            id=envelope.id,
            created_at=envelope.created_at,
            ref=ClaimRef(bucket=self.bucket, key=key, size=len(data)),
        )

    async def load(self, reference: ReferenceEnvelope) -> Envelope:
        """The envelope a reference points at. `ClaimCheckError` (with `missing` when the object
        is gone) or `EnvelopeError` (the object is not a readable envelope of this id)."""
        answer = await self._call_at(reference, "get_object")
        try:
            async with answer["Body"] as stream:
                data = await stream.read()
        except _S3_ERRORS as exc:
            raise ClaimCheckError("get_object", _reason(exc)[0]) from exc
        envelope = Envelope.decode(data.decode("utf-8", errors="replace"))
        if envelope.id != reference.id:
            raise EnvelopeError(f"the stored envelope is {envelope.id}, not {reference.id}")
        return envelope

    async def delete(self, reference: ReferenceEnvelope) -> None:
        await self._call_at(reference, "delete_object")

    async def exists(self, reference: ReferenceEnvelope) -> bool:
        try:
            await self._call_at(reference, "head_object")
        except ClaimCheckError as exc:
            if exc.missing:
                return False
            raise
        return True

    async def _call_at(self, reference: ReferenceEnvelope, operation: str) -> Any:
        try:
            return await getattr(self._client, operation)(
                Bucket=reference.ref.bucket, Key=reference.ref.key
            )
        except _S3_ERRORS as exc:
            reason, missing = _reason(exc)
            raise ClaimCheckError(operation, reason, missing=missing) from exc


async def open_claim_check(stack: AsyncExitStack, settings: Settings) -> ClaimCheck | None:
    """The configured claim check (None when `claim_check.bucket` is not set)."""
    if not settings.claim_check.enabled:
        return None
    return await stack.enter_async_context(ClaimCheck(settings))

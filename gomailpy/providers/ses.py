"""Amazon SES: one raw send per email, through one long-lived aiobotocore client.

    async with SesProvider(settings.providers["ses-eu"], settings.aws, events=...) as ses:
        result = await ses.send(envelope)                # opened its client on entering

`api_version: v2` sends through the `sesv2` API, `SendEmail` with `Content.Raw.Data` (messages
up to 40 MB); `v1` (the default: LocalStack's community edition does not emulate sesv2, moto's
server does) through `SendRawEmail` (10 MB). Both carry the same MIME message, recipients,
configuration set and tags. Each instance sends in its own `region` (default `aws.region`).

The message is built by `gomailpy.email.mime` (so SES sends exactly what SMTP would), `Source` is
the sender and `Destinations` every recipient, Bcc included. botocore retries are off
(`max_attempts=1`): the pipeline owns retries, and a retry hidden in here would spend the send
timeout twice.

How SES errors map to outcomes (see `classify_client_error`):

| SES error                                                     | outcome   |
|---------------------------------------------------------------|-----------|
| Throttling "Maximum sending rate exceeded", TooManyRequests   | THROTTLED |
| (v2) LimitExceeded                                            | THROTTLED |
| Throttling "Daily message quota exceeded"                     | ACCOUNT   |
| MessageRejected "not verified" / "Did not have authority"     | ACCOUNT   |
| MailFromDomainNotVerified, sending paused, config set missing | ACCOUNT   |
| (v2) AccountSuspended, NotFound (the configuration set)       | ACCOUNT   |
| bad credentials, AccessDenied                                 | ACCOUNT   |
| other MessageRejected, InvalidParameterValue (bad address)    | PERMANENT |
| (v2) BadRequest                                               | PERMANENT |
| HTTP 5xx, network errors, timeouts                            | TRANSIENT |
| anything else                                                 | TRANSIENT |
| a non-ASCII local part (SES v1 has no SMTPUTF8), without a call | ACCOUNT |

Events (`events.enabled`): sends carry the configuration set whose SNS event destination
`gomail init` creates (`configuration_set_for`) and the message tags `gomailpy-id=<message id>`
and `gomailpy-provider=<instance name>`, which SES hands back in every event (`mail.tags`), so an
event finds its email and the instance that sent it.

The daily quota is an account limit that lasts hours, so another provider should take the email
rather than this one being retried. Unknown errors are TRANSIENT: failing an email for good on an
error nobody has classified cannot be undone, while a retry ends, at worst, in the dead-letter
queue where an operator sees it.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.config.feedback import EventsSettings
from gomailpy.config.providers import SesSettings
from gomailpy.config.settings import AwsSettings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import (
    all_recipients,
    envelope_sender,
    needs_smtputf8,
    render_bytes,
)
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.aws import AwsResource, open_aws_client

NAME = "ses"
MESSAGE_ID_TAG = "gomailpy-id"
INSTANCE_TAG = "gomailpy-provider"  # which SES instance sent it: gomailpy.feedback.ses
# What SES allows in a tag value. Message ids are UUIDs; one that is not (an envelope written by
# another tool) goes untagged, and its events join by SES's message id instead.
_TAG_VALUE = re.compile(r"[A-Za-z0-9_-]{1,255}")

_ACCOUNT_CODES = frozenset(
    {
        "MailFromDomainNotVerified",
        "MailFromDomainNotVerifiedException",
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetDoesNotExistException",
        "ConfigurationSetSendingPausedException",
        "AccountSendingPausedException",
        "SendingPausedException",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "InvalidAccessKeyId",
        "AccountSuspendedException",  # v2
        "NotFoundException",  # v2: the configuration set
    }
)
_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestThrottled",
        "LimitExceededException",  # v2
    }
)
_PERMANENT_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MessageRejected",
        "BadRequestException",  # v2
    }
)
_ACCOUNT_REJECTIONS = ("not verified", "did not have authority", "not authorized")
_MAX_REASON = 300


def classify_client_error(error: ClientError) -> tuple[Outcome, str]:
    """(outcome, reason) for an error answered by SES; see the table in the module docstring."""
    details: dict[str, Any] = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = str(details.get("Message", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    reason = f"{code or 'error'} (HTTP {status}): {message}"[:_MAX_REASON]
    lowered = message.lower()

    if code in _THROTTLE_CODES:
        if "daily" in lowered and "quota" in lowered:
            return Outcome.ACCOUNT, reason
        return Outcome.THROTTLED, reason
    if code in _ACCOUNT_CODES:
        return Outcome.ACCOUNT, reason
    if code == "MessageRejected" and any(text in lowered for text in _ACCOUNT_REJECTIONS):
        return Outcome.ACCOUNT, reason
    if status >= 500:
        return Outcome.TRANSIENT, reason
    if code in _PERMANENT_CODES:
        return Outcome.PERMANENT, reason
    return Outcome.TRANSIENT, reason


def configuration_set_for(ses: SesSettings, events: EventsSettings | None) -> str | None:
    """The configuration set sends carry: `providers.ses.configuration_set` when set (init then
    adds the events destination to it), else with events on `events.ses_configuration_set`."""
    if ses.configuration_set:
        return ses.configuration_set
    if events is not None and events.enabled:
        return events.ses_configuration_set
    return None


class SesProvider(AwsResource):
    """Sends through SES (`sesv2` SendEmail, or v1 SendRawEmail) over one aiobotocore client; a
    one-shot async context manager (see `gomailpy.queues.aws.AwsResource`) that opens the client
    unless one is given (an `sesv2` client for v2, `ses` for v1)."""

    kind = NAME

    def __init__(
        self,
        settings: SesSettings,
        aws: AwsSettings,
        *,
        events: EventsSettings | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(client=client)
        self._settings = settings
        self.name = settings.name  # the instance: labels, health, controls
        self._aws = aws
        self._configuration_set = configuration_set_for(settings, events)
        self._tag_sends = events is not None and events.enabled
        self.timeout_s = settings.timeout_s
        # One HTTP connection per call in flight: the pipeline starts at most this many.
        self.max_concurrency = (
            aws.max_pool_connections
            if client is None
            else int(client.meta.config.max_pool_connections or 10)
        )

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        return await open_aws_client(
            stack,
            "sesv2" if self._settings.api_version == "v2" else "ses",
            self._aws,
            region=self._settings.region,
            endpoint_url=self._settings.endpoint_url,
            read_timeout_s=self._settings.timeout_s,
            max_attempts=1,  # the pipeline retries, with its own back-off
            keep_alive=True,  # a TCP connect per send otherwise (gomailpy.queues.aws._keep_alive)
        )

    async def send(self, envelope: Envelope) -> SendResult:
        email = envelope.email
        if needs_smtputf8(email):
            # SES takes only ASCII local parts; an SMTP relay with SMTPUTF8 may take this one.
            return SendResult(
                self.name, Outcome.ACCOUNT, reason="SES cannot send to a non-ASCII local part"
            )
        try:
            raw = render_bytes(envelope)
            # SES hands tags back in every event: they find the email and the instance (one
            # named after its kind goes unnamed: the kind's events are its own).
            tags = []
            if self._tag_sends and _TAG_VALUE.fullmatch(envelope.id):
                tags.append({"Name": MESSAGE_ID_TAG, "Value": envelope.id})
            if self._tag_sends and self.name != NAME:
                tags.append({"Name": INSTANCE_TAG, "Value": self.name})
            if self._settings.api_version == "v2":
                request: dict[str, Any] = {
                    "FromEmailAddress": envelope_sender(email),
                    # The envelope: every recipient, Bcc included (the message has no Bcc).
                    "Destination": {"ToAddresses": all_recipients(email)},
                    "Content": {"Raw": {"Data": raw}},
                }
                if tags:
                    request["EmailTags"] = tags
            else:
                request = {
                    "Source": envelope_sender(email),
                    "Destinations": all_recipients(email),
                    "RawMessage": {"Data": raw},
                }
                if tags:
                    request["Tags"] = tags
            if self._configuration_set:
                request["ConfigurationSetName"] = self._configuration_set
            if self._settings.api_version == "v2":
                response = await self._client.send_email(**request)
            else:
                response = await self._client.send_raw_email(**request)
        except ClientError as exc:
            outcome, reason = classify_client_error(exc)
            return SendResult(self.name, outcome, reason=reason)
        except BotoCoreError as exc:  # no answer: connection refused or reset, read timeout
            return SendResult(self.name, Outcome.TRANSIENT, reason=f"{type(exc).__name__}: {exc}")
        return SendResult(
            self.name, Outcome.ACCEPTED, provider_message_id=response.get("MessageId")
        )

"""Create what the delivery store, the claim check and the events need (`gomail init`, `gomail
up`, tests).

With `events.enabled`, the SES events path of each SES instance, in its region (AWS's durable
one: nothing is lost while the nodes are down, and no endpoint is public):

    SES configuration set (events.ses_configuration_set)
      -> event destination "gomailpy-sns-<set>" (send, reject, bounce, complaint, delivery,
         deliveryDelay)
      -> SNS topic (events.ses_topic)
      -> subscription, raw delivery off (SNS's envelope is what the consumer reads)
      -> events queue (events.queue, with its dead-letter queue and redrive policy), whose
         policy lets that topic, and only it, send to it

Everything is created if missing and brought in line if present: safe to run again. The queue's
policy is replaced by one that lets the topic send.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.config.settings import Settings
from gomailpy.errors import BackendError
from gomailpy.providers.ses import configuration_set_for
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.claim_check import ClaimCheck
from gomailpy.queues.sqs import create_queue_client, queue_name
from gomailpy.store.deliveries import DynamoDeliveryStore
from gomailpy.webhooks.queue import ensure_webhook_queue

EVENT_DESTINATION = "gomailpy-sns"  # the event destination's name, with the set's own after it
EVENT_TYPES = ["send", "reject", "bounce", "complaint", "delivery"]
# Newer than the others: a server that does not know it (older SES APIs, emulators) gets the rest.
DELIVERY_DELAY = "deliveryDelay"


async def ensure_resources(settings: Settings) -> list[str]:
    """Create the DynamoDB delivery table, the S3 claim-check bucket and the events path when
    configured; safe to run again. Returns what is ready, e.g. ["table gomailpy-status",
    "bucket b"]."""
    ready: list[str] = []
    async with AsyncExitStack() as stack:
        if settings.status.backend == "dynamodb":
            store = await stack.enter_async_context(DynamoDeliveryStore(settings))
            await store.ensure_table()
            ready.append(f"table {settings.status.table}")
        if settings.claim_check.enabled:
            claim_check = await stack.enter_async_context(ClaimCheck(settings))
            await claim_check.ensure_bucket()
            ready.append(f"bucket {claim_check.bucket}")
    if settings.events.enabled:
        ready += await ensure_events(settings)
    if settings.webhooks.enabled:
        ready.append(await ensure_webhook_queue(settings))
    return ready


class _Failed(BackendError):
    def __init__(self, operation: str, exc: BaseException) -> None:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            reason = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        super().__init__(f"events: {operation} failed: {reason}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def ensure_events(settings: Settings) -> list[str]:
    """The events queue, and for each SES instance the SNS topic (in the instance's region)
    subscribed to it and the configuration set that publishes to the topic (see the module
    docstring). BackendError names the failed step."""
    events = settings.events
    ready: list[str] = []
    async with create_queue_client(settings) as queues, AsyncExitStack() as stack:
        queue_url = await queues.ensure_queue(events.queue)
        sqs = queues.client
        name = queue_name(queue_url)
        ready.append(
            f"events queue {queue_url} (dead-letter queue: {name}{settings.queues.dlq_suffix})"
        )
        step = "sqs get_queue_attributes"
        try:
            answer = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _Failed(step, exc) from exc
        queue_arn = str(answer["Attributes"]["QueueArn"])
        topics: list[str] = []
        # With no SES instance enabled yet, the path of the one it would be (as before).
        for ses_settings in settings.providers.ses_instances() or [settings.providers.ses]:
            region = ses_settings.region or settings.aws.region  # SES publishes in its region
            sns = await open_aws_client(stack, "sns", settings.aws, region=region)
            ses = await open_aws_client(
                stack, "ses", settings.aws, region=region, endpoint_url=ses_settings.endpoint_url
            )
            step = f"{ses_settings.name}: sns create_topic"
            try:
                topic = ses_settings.events_topic or events.ses_topic
                topic_arn = str((await sns.create_topic(Name=topic))["TopicArn"])
                topics.append(topic_arn)
                step = f"{ses_settings.name}: sqs set_queue_attributes (policy)"
                await sqs.set_queue_attributes(
                    QueueUrl=queue_url, Attributes={"Policy": _queue_policy(queue_arn, topics)}
                )
                step = f"{ses_settings.name}: sns subscribe"
                await _subscribe(sns, topic_arn, queue_arn)
                configuration_set = configuration_set_for(ses_settings, events)
                assert configuration_set is not None  # events are enabled
                step = f"{ses_settings.name}: ses configuration set"
                types = await _ensure_configuration_set(ses, configuration_set, topic_arn)
            except (ClientError, BotoCoreError, OSError) as exc:
                raise _Failed(step, exc) from exc
            ready += [
                f"topic {topic_arn} -> events queue {name} (SES {ses_settings.name})",
                f"configuration set {configuration_set} in {region} -> topic"
                f" ({', '.join(types)}; SES {ses_settings.name})",
            ]
    return ready


def _queue_policy(queue_arn: str, topic_arns: list[str]) -> str:
    sources: str | list[str] = topic_arns[0] if len(topic_arns) == 1 else topic_arns
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "gomailpy-ses-events",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": sources}},
                }
            ],
        }
    )


async def _subscribe(sns: Any, topic_arn: str, queue_arn: str) -> None:
    """Subscribe the queue unless it is already; raw delivery off either way."""
    found: str | None = None
    token: str | None = None
    while found is None:
        kwargs: dict[str, Any] = {"TopicArn": topic_arn}
        if token:
            kwargs["NextToken"] = token
        page = await sns.list_subscriptions_by_topic(**kwargs)
        for subscription in page.get("Subscriptions", []):
            if subscription.get("Protocol") == "sqs" and subscription.get("Endpoint") == queue_arn:
                found = str(subscription["SubscriptionArn"])
        token = page.get("NextToken")
        if not token:
            break
    if found is None:
        answer = await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "false"},
            ReturnSubscriptionArn=True,
        )
        found = str(answer["SubscriptionArn"])
    await sns.set_subscription_attributes(
        SubscriptionArn=found, AttributeName="RawMessageDelivery", AttributeValue="false"
    )


async def _ensure_configuration_set(ses: Any, name: str, topic_arn: str) -> list[str]:
    """The configuration set and its SNS event destination; returns the event types it sends."""
    try:
        await ses.create_configuration_set(ConfigurationSet={"Name": name})
    except ClientError as exc:
        if "AlreadyExists" not in _code(exc):
            raise
    # Named per set: LocalStack keeps destination names unique across all sets, SES within one.
    destination_name = f"{EVENT_DESTINATION}-{name}"[:64]
    answer = await ses.describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    existing = next(
        (d for d in answer.get("EventDestinations", []) if d.get("Name") == destination_name),
        None,
    )
    for types in (EVENT_TYPES + [DELIVERY_DELAY], EVENT_TYPES):
        destination = {
            "Name": destination_name,
            "Enabled": True,
            "MatchingEventTypes": types,
            "SNSDestination": {"TopicARN": topic_arn},
        }
        if existing is not None and _same_destination(existing, destination):
            return types
        try:
            await _put_destination(ses, name, destination, replace=existing is not None)
            return types
        except ClientError as exc:
            if types == EVENT_TYPES or "InvalidParameter" not in _code(exc):
                raise
    raise AssertionError("unreachable")


def _same_destination(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return (
        bool(existing.get("Enabled"))
        and set(existing.get("MatchingEventTypes", [])) == set(wanted["MatchingEventTypes"])
        and existing.get("SNSDestination", {}).get("TopicARN")
        == wanted["SNSDestination"]["TopicARN"]
    )


async def _put_destination(
    ses: Any, name: str, destination: dict[str, Any], *, replace: bool
) -> None:
    if replace:
        try:
            await ses.update_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestination=destination
            )
            return
        except ClientError as exc:
            # LocalStack has no update: delete the destination and create it again.
            if "not been implemented" not in str(exc) and _code(exc) != "InternalFailure":
                raise
        await ses.delete_configuration_set_event_destination(
            ConfigurationSetName=name, EventDestinationName=destination["Name"]
        )
    await ses.create_configuration_set_event_destination(
        ConfigurationSetName=name, EventDestination=destination
    )

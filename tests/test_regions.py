"""Regional queues: the pure choice (api.enqueue.queue_choice.regional_order, caller_region) as
tables, then the gateway and the API on LocalStack's SQS with two regions, and pipeline pinning.

Spilling is driven by depths the gateway knows: its refresh reads them from SQS, and each email it
puts on a queue counts until the next refresh. No test asserts a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from pydantic import ValidationError

from api.app import create_app
from api.enqueue.gateway import QueueGateway
from api.enqueue.queue_choice import caller_region, regional_order
from api.enqueue.regional_clients import url_region
from gomailpy.config.regions import RegionSettings
from gomailpy.config.settings import ApiSettings, Settings
from gomailpy.metrics import sample
from gomailpy.queues.sqs import QueueClient, create_queue_client, queue_name
from pipeline.node import PipelineNode
from tests.boundary import ScriptedProvider
from tests.conftest import StartClient
from tests.support import email_request, make_settings

REGION_OF = {"eu1": "eu", "eu2": "eu", "us1": "us"}
ORDER = ["eu1", "us1", "eu2"]  # as a chooser gave it


@pytest.mark.parametrize(
    ("depths", "home", "spill_depth", "expected"),
    [
        ({}, "eu", 10, ["eu1", "eu2", "us1"]),  # home first, in the chooser's order
        ({"eu1": 4, "eu2": 6, "us1": 0}, "eu", 10, ["eu1", "eu2", "us1"]),  # at the threshold: home
        ({"eu1": 5, "eu2": 6, "us1": 50}, "eu", 10, ["us1", "eu1", "eu2"]),  # over it: spill
        ({"eu1": 0, "eu2": 0, "us1": 0}, "us", 0, ["us1", "eu1", "eu2"]),  # the other home
        ({"us1": 1}, "us", 0, ["eu1", "eu2", "us1"]),  # threshold 0: any backlog spills
        ({}, None, 10, ORDER),  # no home region: the chooser's order
        ({}, "asia", 10, ORDER),  # a home with no queue: the chooser's order
    ],
)
def test_regional_order(
    depths: Mapping[str, int], home: str | None, spill_depth: int, expected: list[str]
) -> None:
    assert regional_order(ORDER, depths, REGION_OF, home, spill_depth) == expected


def test_untagged_queues_are_elsewhere_for_every_home() -> None:
    region_of = {"eu1": "eu"}
    assert regional_order(["plain", "eu1"], {}, region_of, "eu", 5) == ["eu1", "plain"]
    assert regional_order(["plain", "eu1"], {"eu1": 9}, region_of, "eu", 5) == ["plain", "eu1"]


@pytest.mark.parametrize(
    ("asked", "home", "expected"),
    [
        (None, "eu", "eu"),
        ("us", "eu", "us"),
        (" us ", "eu", "us"),
        ("mars", "eu", "eu"),  # not a configured region: ignored
        ("", None, None),
        ("us", None, "us"),
    ],
)
def test_caller_region(asked: str | None, home: str | None, expected: str | None) -> None:
    assert caller_region(asked, home, {"eu", "us"}) == expected


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ([], ["eu1", "https://sqs/1/us1", "plain"]),
        (["us"], ["https://sqs/1/us1"]),
        (["eu"], ["eu1"]),
    ],
)
def test_pinned_nodes_read_their_regions_queues(pipeline: list[str], expected: list[str]) -> None:
    regions = RegionSettings(queues={"eu1": "eu", "us1": "us"}, home="eu", pipeline=pipeline)
    assert regions.pinned(["eu1", "https://sqs/1/us1", "plain"]) == expected


@pytest.mark.parametrize(
    "data", [{"queues": {"q": "eu"}, "home": "us"}, {"queues": {"q": "eu"}, "pipeline": ["us"]}]
)
def test_a_region_without_queues_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="no queue is in that region"):
        RegionSettings.model_validate(data)


# -- on SQS -------------------------------------------------------------------------------------


class InOrder:
    """A chooser that offers the queues in configuration order (the regional order decides)."""

    def order(self, queues: Sequence[str], depths: Mapping[str, int]) -> list[str]:
        return sorted(queues, key=lambda queue: depths.get(queue, 0))


@pytest.fixture
async def settings(sqs_endpoint: str) -> Settings:
    return make_settings(sqs_endpoint, queue_count=3)


def two_regions(entries: Sequence[str], spill_depth: int) -> RegionSettings:
    """The first two entries in "eu" (home), the third in "us"."""
    eu1, eu2, us1 = (queue_name(entry) for entry in entries)
    return RegionSettings(
        queues={eu1: "eu", eu2: "eu", us1: "us"}, home="eu", spill_depth=spill_depth
    )


async def test_home_mail_stays_home_until_the_depth_passes_the_threshold(
    queues: QueueClient, urls: list[str]
) -> None:
    eu1, eu2, us1 = (queue_name(url) for url in urls)
    gateway = QueueGateway(
        queues, urls, InOrder(), api=ApiSettings(batch_linger_ms=0), regions=two_regions(urls, 5)
    )
    await gateway.refresh()  # every depth known: 0
    spilled_before = sample("gomailpy_region_emails_enqueued_total", {"home": "eu", "region": "us"})

    landed = [await gateway.enqueue(f"email {i}") for i in range(6)]

    assert sorted(landed) == sorted([eu1, eu2] * 3)  # home, least-deep first: evenly
    assert await gateway.enqueue("the seventh") == us1  # home depth 6, over 5: spills
    await gateway.refresh()  # SQS says so too
    assert gateway.region_depth("eu") == 6
    assert await gateway.enqueue("the eighth") == us1
    spilled = sample("gomailpy_region_emails_enqueued_total", {"home": "eu", "region": "us"})
    assert spilled - spilled_before == 2
    assert sample("gomailpy_region_queue_depth", {"region": "eu"}) == 6
    assert {state.name: state.region for state in gateway.states()} == {
        eu1: "eu",
        eu2: "eu",
        us1: "us",
    }


async def test_a_refusing_home_region_spills_at_once(queues: QueueClient, urls: list[str]) -> None:
    base = urls[0].rsplit("/", 1)[0]
    missing = [f"{base}/does-not-exist-{queue_name(url)}" for url in urls[:2]]
    entries = [*missing, urls[2]]
    gateway = QueueGateway(
        queues,
        entries,
        InOrder(),
        api=ApiSettings(batch_linger_ms=0),
        regions=two_regions(entries, 1000),
    )

    assert await gateway.enqueue("first") == queue_name(urls[2])  # not a 503: the other region
    assert await gateway.enqueue("second") == queue_name(urls[2])


async def test_the_callers_region_header_routes_through_the_api(
    settings: Settings, urls: list[str], start_client: StartClient
) -> None:
    regions = two_regions(urls, 1000).model_dump()
    data = settings.model_dump(mode="python")
    data["regions"] = {**regions, "header": "X-Gomail-Region"}
    client = await start_client(create_app(Settings.model_validate(data)))
    before = {
        region: sample("gomailpy_region_emails_enqueued_total", {"home": region, "region": region})
        for region in ("eu", "us")
    }

    for headers in ({}, {"X-Gomail-Region": "us"}, {"X-Gomail-Region": "mars"}):
        response = await client.post("/email/send", json=email_request(), headers=headers)
        assert response.status == 200, await response.text()

    after = {
        region: sample("gomailpy_region_emails_enqueued_total", {"home": region, "region": region})
        for region in ("eu", "us")
    }
    assert after["eu"] - before["eu"] == 2  # no header, and an unknown region: home
    assert after["us"] - before["us"] == 1


@pytest.mark.parametrize(
    ("entry", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123/gomailpy-eu-1", "eu-west-1"),
        ("https://us-east-2.queue.amazonaws.com/123/q", "us-east-2"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123/q", "cn-north-1"),
        ("gomailpy-1", None),
        ("http://127.0.0.1:4566/000000000000/q", None),
    ],
)
def test_url_region(entry: str, region: str | None) -> None:
    assert url_region(entry) == region


async def test_another_aws_regions_queue_goes_through_its_own_client(
    settings: Settings, queues: QueueClient, urls: list[str]
) -> None:
    sent_through: list[str] = []
    async with create_queue_client(settings) as other_region:
        other_region.client.meta.events.register(
            "before-parameter-build.sqs.SendMessageBatch",
            lambda params, **_: sent_through.append(str(params["QueueUrl"])),
        )
        gateway = QueueGateway(
            queues,
            urls,
            InOrder(),
            api=ApiSettings(batch_linger_ms=0),
            regions=two_regions(urls, 1000),
            regional_clients={urls[2]: other_region},
        )
        assert await gateway.enqueue("to us", region="us") == queue_name(urls[2])
        assert await gateway.enqueue("to eu") in {queue_name(urls[0]), queue_name(urls[1])}
        await gateway.refresh()
        await gateway.aclose()
    assert sent_through == [urls[2]]  # the eu email went through the main client


async def test_a_pinned_node_reads_only_its_regions_queues(
    settings: Settings, queues: QueueClient, urls: list[str]
) -> None:
    regions = two_regions(urls, 1000).model_dump()
    data = settings.model_dump(mode="python")
    data["regions"] = {**regions, "pipeline": ["us"]}
    pinned = Settings.model_validate(data)
    async with PipelineNode(pinned, queues, {"smtp": ScriptedProvider("smtp")}) as node:
        await node.resolve_queues()
        assert node.urls == [urls[2]]

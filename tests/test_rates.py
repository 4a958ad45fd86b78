"""Provider rates: the pure rules (pipeline.prepare.rates) as tables, and two nodes on the real SQS
server sending through three providers at their configured rates (pipeline.prepare.pacing)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest

from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.metrics import sample
from gomailpy.operating.controls import Controls, ControlStore
from gomailpy.providers.base import SendResult
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.items import MemoryItemTable
from pipeline.node import PipelineNode
from pipeline.prepare.pacing import Heartbeats, PacedProvider, Rates, open_rates
from pipeline.prepare.rates import BURST_S, Pace, ProviderRate
from pipeline.prepare.ses_quota import SesQuota
from pipeline.sending.controls import steer
from pipeline.sending.health import Verdict, judge
from pipeline.sending.splitter import ProviderView
from pipeline.steering import open_steering
from pipeline.steps import create_steps
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, merge, queue_totals
from tests.test_controls_nodes import until
from tests.test_pipeline import pipeline_settings


def test_a_pace_spaces_sends_at_its_rate_after_a_short_burst() -> None:
    pace = Pace(rate=10)
    waits = [pace.reserve(100.0) for _ in range(int(BURST_S * 10) + 3)]
    assert waits[: int(BURST_S * 10) + 1] == [0.0] * (int(BURST_S * 10) + 1)  # after idling
    assert waits[-2:] == [pytest.approx(0.1), pytest.approx(0.2)]  # then one every 0.1 s
    assert pace.backlog_s(100.0) == pytest.approx(0.3)
    pace.cancel()
    assert pace.backlog_s(100.0) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("ceiling", "live", "expected"), [(20, 1, 20), (20, 2, 10), (9, 3, 3), (0, 2, 0)]
)
def test_each_node_takes_its_share(ceiling: float, live: int, expected: float) -> None:
    assert ProviderRate(ceiling, live_nodes=live).share() == expected


def test_throttling_halves_the_rate_once_a_second_and_it_grows_back() -> None:
    rate = ProviderRate(20.0)
    assert rate.throttled(10.0) and rate.share() == 10
    assert not rate.throttled(10.5) and rate.share() == pytest.approx(10)  # the same burst
    assert rate.throttled(11.0) and rate.share() == pytest.approx(5)
    for second in range(12, 32):
        rate.tick(float(second))
    assert rate.share() == 20  # 5 % of the ceiling a second, capped at it
    for second in range(40, 100):
        rate.throttled(float(second))
    assert rate.share() == pytest.approx(20 * 0.05)  # never below the floor: a trickle


def test_throttling_never_counts_against_health() -> None:
    throttled = [SendResult("ses", outcome) for outcome in ["throttled"] * 5]  # type: ignore[misc]
    assert judge(throttled) is Verdict.IDLE


def test_rate_limited_providers_split_by_their_shares() -> None:
    views = [ProviderView(n, 1.0, True) for n in ("ses", "sendgrid", "smtp")]
    rated = {"ses": 10.0, "sendgrid": 5.0, "smtp": 2.5}
    assert [v.weight for v in steer(views, Controls(), {}, 0, rated)] == [10.0, 5.0, 2.5]
    partly = {"ses": 10.0}  # one without a rate: weights as configured
    assert [v.weight for v in steer(views, Controls(), {}, 0, partly)] == [1.0, 1.0, 1.0]


@dataclass
class TimedProvider(ScriptedProvider):
    sent_at: list[float] = field(default_factory=list)

    async def send(self, envelope: Envelope) -> SendResult:
        result = await super().send(envelope)
        if result.outcome.value == "accepted":
            self.sent_at.append(time.monotonic())
        return result


RATES = {"ses": 20.0, "sendgrid": 10.0, "smtp": 5.0}
EMAILS = 600  # about 17 s at 35/s
MEASURED_S = 10.0


async def test_two_nodes_hold_three_providers_at_their_rates_and_lose_nothing(
    sqs_endpoint: str,
) -> None:
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01, send_timeout_s=3)
    settings = Settings.model_validate(
        merge(
            base.model_dump(mode="python"),
            {"steering": {"rates": RATES, "heartbeat_s": 0.5, "controls_poll_s": 0.5}},
        )
    )
    await create_queues(settings)
    ids = await enqueue(settings, EMAILS)
    table = MemoryItemTable()  # the status table both nodes share
    nodes_providers = [{name: TimedProvider(name) for name in RATES} for _ in range(2)]
    async with AsyncExitStack() as stack:
        nodes = []
        for own in nodes_providers:
            queues = await stack.enter_async_context(create_queue_client(settings))
            rates = await open_rates(stack, settings, own, table)
            assert all(isinstance(p, PacedProvider) for p in rates.providers.values())
            node = await stack.enter_async_context(PipelineNode(settings, queues, rates.providers))
            await open_steering(stack, settings, node, rates=rates)
            node.steps = create_steps(settings, queues, rates=rates, usable=node.usable)
            nodes.append(node)
        runs = [asyncio.create_task(node.run()) for node in nodes]

        def delivered() -> int:
            return sum(len(p.accepted) for own in nodes_providers for p in own.values())

        await until(lambda: delivered() == EMAILS, "all sent", 90)
        for node in nodes:
            node.stop()
        await asyncio.gather(*runs)
    accepted = [i for own in nodes_providers for p in own.values() for i in p.accepted]
    assert sorted(accepted) == sorted(ids)  # nothing lost ...
    assert Counter(accepted).most_common(1)[0][1] == 1  # ... nothing twice
    assert set((await queue_totals(settings)).values()) == {0}
    times = {
        name: sorted(t for own in nodes_providers for t in own[name].sent_at) for name in RATES
    }
    # Measured while the queues still held plenty (the last seconds drain what came back late).
    start = min(t[0] for t in times.values()) + 2.0  # past the first heartbeats and bursts
    end = start + MEASURED_S
    assert all(t[-1] > end for t in times.values())  # every provider still busy
    for name, limit in RATES.items():
        measured = sum(1 for t in times[name] if start <= t < end) / (end - start)
        # Never more than 10 % over the limit: that is what the limiter promises. Under it, a
        # machine too busy to keep up (2 shared cores) is not the limiter's doing, so the floor
        # is looser; on a quiet machine the rates land within 10 % (README, "Operating it").
        assert limit * 0.75 <= measured <= limit * 1.10, (name, measured, limit)


async def test_ses_throttling_shrinks_its_rate_and_costs_neither_mail_nor_health(
    sqs_endpoint: str,
) -> None:
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01, send_timeout_s=3)
    settings = Settings.model_validate(
        merge(base.model_dump(mode="python"), {"steering": {"rates": {"ses": 40.0}}})
    )
    await create_queues(settings)
    ids = await enqueue(settings, 120)
    ses = ScriptedProvider("ses", mode="throttle")
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        rates = await open_rates(stack, settings, {"ses": ses}, MemoryItemTable())
        paced = rates.paced["ses"]
        node = await stack.enter_async_context(PipelineNode(settings, queues, rates.providers))
        await open_steering(stack, settings, node, rates=rates)
        node.steps = create_steps(settings, queues, rates=rates, usable=node.usable)
        run = asyncio.create_task(node.run())
        await until(lambda: paced.rate.share() <= 10, "the rate halved twice")
        assert node.health["ses"].healthy  # throttling says nothing about an outage
        ses.mode = "ok"  # SES takes mail again
        await until(lambda: len(ses.accepted) == len(ids), "all sent", 60)
        node.stop()
        await run
    assert sorted(ses.accepted) == sorted(ids)
    assert node.health["ses"].healthy
    assert set((await queue_totals(settings)).values()) == {0}


@pytest.mark.parametrize("configured", [0.0, 0.5, 1000.0])
async def test_ses_rate_comes_from_its_send_quota_unless_configured_lower(
    sqs_endpoint: str, configured: float
) -> None:
    settings = pipeline_settings(sqs_endpoint)
    settings = Settings.model_validate(
        merge(
            settings.model_dump(mode="python"),
            {
                "providers": {"ses": {"enabled": True}},
                "steering": {"ses_quota": True, "rates": {"ses": configured}},
            },
        )
    )
    async with AsyncExitStack() as stack:
        ses = ScriptedProvider("ses")
        opened = await open_rates(stack, settings, {"ses": ses}, MemoryItemTable())
        quota = opened.paced["ses"].rate.ceiling
        client = await open_aws_client(
            stack, "ses", settings.aws, region=None, endpoint_url=None, max_attempts=1
        )
        max_send_rate = float((await client.get_send_quota())["MaxSendRate"])
    assert max_send_rate > 0  # LocalStack's answer, as SES's
    assert quota == (min(configured, max_send_rate) if configured else max_send_rate)
    assert sample("gomailpy_provider_daily_quota_remaining", {"provider": "ses"}) > 0


class QuotaAnswers:
    """SES's GetSendQuota at the boundary: the answers an account gives over a day."""

    def __init__(self, *answers: dict[str, float]) -> None:
        self.answers = list(answers)

    async def get_send_quota(self) -> dict[str, float]:
        return self.answers.pop(0)


async def test_a_nearly_spent_daily_quota_moves_traffic_away_and_status_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rate = ProviderRate(0.0)
    client = QuotaAnswers(
        {"MaxSendRate": 14, "Max24HourSend": 50_000, "SentLast24Hours": 1_000},
        {"MaxSendRate": 14, "Max24HourSend": 50_000, "SentLast24Hours": 49_500},
    )
    quota = SesQuota(client, rate, configured=0, refresh_s=1)
    await quota.refresh()
    assert rate.ceiling == 14 and not quota.nearly_spent
    table = MemoryItemTable()
    beats = Heartbeats(table, {"ses": rate}, 5.0, node_id="n1", quotas={"ses": quota})
    await beats.beat()
    lines = await ControlStore(table).node_rates()
    assert lines == ["node n1: ses 14.0/s; ses quota left today 49000"]
    with caplog.at_level(logging.WARNING, "gomailpy.pipeline"):
        await quota.refresh()
    assert quota.nearly_spent and "SES daily quota nearly spent" in caplog.text
    rates = Rates({}, {}, {"ses": quota})
    views = [ProviderView("ses", 1.0, True), ProviderView("smtp", 1.0, True)]
    assert [v.name for v in steer(views, Controls(), {}, 0, None, rates.spent())] == ["smtp"]

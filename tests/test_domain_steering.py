"""Per-domain steering on a real pipeline node over LocalStack's SQS: the SMTP stand-in refuses
every recipient at blocked.example.net by policy (mode "block-domain"); within a few outcomes
that domain's mail leaves smtp for the other providers, every other domain's mail still goes
through smtp, nothing is lost; once the relay takes the domain again, a probe ends the
exclusion. Waits are for outcomes; settings shortened so it all happens in seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import all_recipients
from gomailpy.providers.base import SendResult
from gomailpy.providers.smtp import SmtpProvider
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.standins.smtp import BLOCKED_DOMAIN, SmtpStandIn
from pipeline.node import PipelineNode
from tests.boundary import ScriptedProvider
from tests.support import create_queues, make_envelope, merge, queue_totals
from tests.test_controls_nodes import until
from tests.test_pipeline import pipeline_settings

OTHER_DOMAIN = "example.org"


@dataclass
class Watched:
    """A provider, with the recipient domain of every send it was given."""

    inner: SmtpProvider
    name: str = "smtp"
    domains: Counter[str] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)

    @property
    def timeout_s(self) -> float:
        return self.inner.timeout_s

    @property
    def max_concurrency(self) -> int | None:
        return self.inner.max_concurrency

    async def send(self, envelope: Envelope) -> SendResult:
        for address in all_recipients(envelope.email):
            self.domains[address.rpartition("@")[2]] += 1
        result = await self.inner.send(envelope)
        if result.ok:
            self.accepted.append(envelope.id)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def settings_for(endpoint: str) -> Settings:
    base = pipeline_settings(endpoint, min_iteration_duration_s=0.05)
    shortened = {
        "providers": {"smtp": {"enabled": True}},
        "steering": {
            "domains": {"min_events": 3, "probe_after_s": 2, "probe_wait_s": 0.5, "window_s": 60}
        },
    }
    return type(base).model_validate(merge(base.model_dump(mode="python"), shortened))


async def enqueue_to(settings: Settings, domains: list[str], start: int) -> list[str]:
    ids = []
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        for n, domain in enumerate(domains, start):
            envelope = make_envelope(n, toEmail=f"rcpt{n}@{domain}")
            ids.append(envelope.id)
            result = await queues.send_batch(urls[n % len(urls)], [(str(n), envelope.encode())])
            assert not result.failed
    return ids


def excluded_gauge() -> float:
    return metrics.sample(
        "gomailpy_domain_excluded", {"provider": "smtp", "domain": BLOCKED_DOMAIN}
    )


async def test_a_domain_blocked_at_one_provider_moves_to_the_others(
    sqs_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(sqs_endpoint)
    await create_queues(settings)
    ses, sendgrid = ScriptedProvider("ses"), ScriptedProvider("sendgrid")
    caplog.set_level(logging.INFO, "gomailpy")
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(SmtpStandIn(mode="block-domain"))
        smtp_settings = settings.providers.smtp.model_copy(
            update={"host": relay.host, "port": relay.port}
        )
        smtp = Watched(await stack.enter_async_context(SmtpProvider(smtp_settings)))
        providers = {"ses": ses, "sendgrid": sendgrid, "smtp": smtp}
        queues = await stack.enter_async_context(create_queue_client(settings))
        node = await stack.enter_async_context(PipelineNode(settings, queues, providers))
        run = asyncio.create_task(node.run())

        def delivered() -> set[str]:
            return set(ses.accepted) | set(sendgrid.accepted) | set(smtp.accepted)

        def accepted(ids: list[str]) -> bool:
            return all(i in ses.accepted or i in sendgrid.accepted for i in ids)

        # Mixed mail: smtp is refused at the blocked domain (each such email goes out through
        # another provider at once: a policy refusal is no fault of the email) until excluded.
        started = time.monotonic()  # the exclusion, and its probe clock, start after this
        first_blocked = await enqueue_to(settings, [BLOCKED_DOMAIN] * 12, 0)
        first_other = await enqueue_to(settings, [OTHER_DOMAIN] * 12, 100)
        await until(lambda: accepted(first_blocked), "the first blocked-domain mail, elsewhere")
        await until(
            lambda: node.domains.health.excluded("smtp", BLOCKED_DOMAIN, 0), "the exclusion"
        )
        assert excluded_gauge() == 1
        assert "provider smtp excluded for domain blocked.example.net" in caplog.text
        tried = smtp.domains[BLOCKED_DOMAIN]
        assert 3 <= tried <= 12  # it took a few outcomes, not all of them

        # From now on: none of that domain's mail for smtp, but for one probe per probe_after_s
        # (a slow machine can take longer than that over this phase); other domains still go
        # through it.
        blocked = await enqueue_to(settings, [BLOCKED_DOMAIN] * 20, 200)
        other = await enqueue_to(settings, [OTHER_DOMAIN] * 20, 300)
        await until(lambda: accepted(blocked), "the blocked-domain mail, elsewhere")
        probes = int((time.monotonic() - started) / settings.steering.domains.probe_after_s)
        assert probes < 20, "so slow that the bound below would admit all 20"
        assert tried <= smtp.domains[BLOCKED_DOMAIN] <= tried + probes
        tried = smtp.domains[BLOCKED_DOMAIN]
        await until(
            lambda: len(delivered() & set(first_other + other)) == 32, "the other domain's mail"
        )
        assert set(smtp.accepted) & set(other), "other domains' mail still goes through smtp"

        # The relay takes the domain again: after probe_after_s one email probes the pair, and
        # its acceptance with no refusal ends the exclusion.
        relay.mode = "ok"
        later = 400
        while node.domains.health.excluded("smtp", BLOCKED_DOMAIN, 0):
            await enqueue_to(settings, [BLOCKED_DOMAIN] * 2, later)
            later += 2
            await asyncio.sleep(0.5)
            assert later < 480, "the exclusion never ended"
        assert excluded_gauge() == 0
        assert "provider smtp back for domain blocked.example.net" in caplog.text
        assert smtp.domains[BLOCKED_DOMAIN] > tried  # the probe

        await until(lambda: len(delivered()) == 64 + (later - 400), "the probing mail")
        node.stop()
        await run
    # Nothing lost: every email was accepted somewhere, nothing left, nothing dead-lettered.
    assert set((await queue_totals(settings)).values()) == {0}
    assert len(delivered()) == 12 + 12 + 20 + 20 + (later - 400)

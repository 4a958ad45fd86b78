"""Rendering stored templates (gomailpy.email.templates), one of the steps before sending
(pipeline.steps), after suppression and before the split: every provider gets the email with its
subject, HTML and text in place and no template left to read.

Rendering happens on every attempt, never at the API, so an edited template applies to every
email not yet sent. A template part replaces the request's part of the same name; a part the
template lacks keeps the request's. Outcomes:
- rendered: the item goes on, with the rendered email;
- the template is missing, or fails to parse or render (or goes past its limits of output,
  steps and time): failed for good, with the template's error, in the dead-letter queue and the
  delivery record (no provider could do better, and retrying would fail the same way);
- the table that holds templates did not answer: released for a retry, like any outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gomailpy.email.templates import Template, TemplateError, render
from gomailpy.errors import StoreError
from gomailpy.queues.deadletter import FailureKind
from gomailpy.store.deliveries import DeliveryState, DeliveryStore, after_attempt
from gomailpy.store.templates import TemplateStore
from pipeline.sending.settlement import Item, IterationReport, Taken, write_records

log = logging.getLogger("gomailpy.pipeline")

TEMPLATES_OFF = "the email names a template, but this node has no template store (status.backend)"


class Renderer:
    """The step that renders templated items (see the module docstring)."""

    def __init__(
        self,
        templates: TemplateStore | None,
        status: DeliveryStore | None = None,
        *,
        retry_delay_s: int = 5,
    ) -> None:
        self._templates = templates
        self._status = status
        self._retry_delay_s = retry_delay_s

    async def __call__(self, taken: Taken, report: IterationReport) -> Taken:
        items, plan = taken
        if not any(item.envelope.email.template is not None for item in items):
            return taken
        found: dict[str, Template | None | Exception] = {}  # one read per template per batch
        ready: list[Item] = []
        failures: list[tuple[Item, str]] = []
        for item in items:
            ref = item.envelope.email.template
            if ref is None:
                ready.append(item)
                continue
            if ref.id not in found:
                found[ref.id] = await self._read(ref.id)
            template = found[ref.id]
            if isinstance(template, StoreError):
                plan.release(item.message, self._retry_delay_s)
                report.retried += 1
                log.warning("email %s: templates unreachable (%s)", item.envelope.id, template)
                continue
            try:
                # In a thread: a template may use its whole budget
                # (gomailpy.email.templates.LIMITS), and the loop has leases and other emails to
                # keep up meanwhile.
                ready.append(await asyncio.to_thread(self._rendered, item, template, ref.data))
            except TemplateError as exc:
                failures.append((item, str(exc)))
        for item, reason in failures:
            log.warning("email %s failed: %s", item.envelope.id, reason)
            plan.dead_letter(
                item.message,
                FailureKind.PERMANENT,
                reason,
                message_id=item.envelope.id,
                reference=item.reference,
            )
        await self._record_failures(failures)
        return ready, plan

    async def _read(self, template_id: str) -> Template | None | Exception:
        if self._templates is None:
            return TemplateError(TEMPLATES_OFF)
        try:
            return await self._templates.get(template_id)
        except StoreError as exc:
            return exc

    @staticmethod
    def _rendered(item: Item, template: Template | None | Exception, data: dict[str, Any]) -> Item:
        envelope = item.envelope
        ref = envelope.email.template
        assert ref is not None
        if isinstance(template, Exception):
            raise TemplateError(str(template))
        if template is None:
            raise TemplateError(f"template {ref.id!r} does not exist (gomail templates list)")
        parts = render(template, data)
        email = envelope.email.model_copy(
            update={
                "subject": parts.subject if parts.subject is not None else envelope.email.subject,
                "html": parts.html if parts.html is not None else envelope.email.html,
                "text": parts.text if parts.text is not None else envelope.email.text,
                "template": None,
            }
        )
        item.envelope = envelope.model_copy(update={"email": email})
        return item

    async def _record_failures(self, failures: list[tuple[Item, str]]) -> None:
        if self._status is None or not failures:
            return
        now = time.time()
        records = [
            after_attempt(
                item.record,
                item.envelope.id,
                queued_at=item.envelope.created_at.timestamp(),
                state=DeliveryState.FAILED,
                now=now,
                attempt=item.message.receive_count,
                reason=reason,
            )
            for item, reason in failures
        ]
        await write_records(self._status, [r for r in records if r is not None])

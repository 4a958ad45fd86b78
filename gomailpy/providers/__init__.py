"""Email providers behind one interface (`base.Provider`): SES, SendGrid, SMTP.

    async with AsyncExitStack() as stack:
        providers = await open_providers(stack, settings)   # {"ses": ..., "smtp": ...}
        result = await providers["ses"].send(envelope)

Each enabled provider is built once per process, entered on the stack (every provider is a
one-shot async context manager) and closed when the stack closes. A provider's `send` is plain:
the pipeline (pipeline.dispatch) bounds each call with the provider's `timeout_s` and guards it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.providers.sendgrid import SendGridProvider
from gomailpy.providers.ses import SesProvider
from gomailpy.providers.smtp import SmtpProvider
from gomailpy.settings import Settings

__all__ = [
    "Outcome",
    "Provider",
    "SendGridProvider",
    "SendResult",
    "SesProvider",
    "SmtpProvider",
    "open_providers",
]


async def open_providers(stack: AsyncExitStack, settings: Settings) -> dict[str, Provider]:
    """Build every enabled provider (name -> provider); each is closed when `stack` closes."""
    configured = settings.providers
    providers: dict[str, Provider] = {}
    if configured.ses.enabled:
        providers[SesProvider.name] = await stack.enter_async_context(
            SesProvider(configured.ses, settings.aws, events=settings.events)
        )
    if configured.sendgrid.enabled:
        providers[SendGridProvider.name] = await stack.enter_async_context(
            SendGridProvider(configured.sendgrid)
        )
    if configured.smtp.enabled:
        providers[SmtpProvider.name] = await stack.enter_async_context(
            SmtpProvider(configured.smtp, settings.events)
        )
    return providers

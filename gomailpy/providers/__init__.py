"""Email providers behind one interface (`base.Provider`): SES, SendGrid, SMTP.

    async with AsyncExitStack() as stack:
        providers = await open_providers(stack, settings)   # {"ses": ..., "smtp": ...}
        result = await providers["ses"].send(envelope)

Each enabled provider is built once per process and closed when the stack closes. Every
provider bounds a send with its own `timeout_s` and answers TRANSIENT "timed out after Ns"
when it runs out.
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
        ses = await SesProvider.open(configured.ses, settings.aws)
        stack.push_async_callback(ses.aclose)
        providers[ses.name] = ses
    if configured.sendgrid.enabled:
        sendgrid = SendGridProvider(configured.sendgrid)
        stack.push_async_callback(sendgrid.aclose)
        providers[sendgrid.name] = sendgrid
    if configured.smtp.enabled:
        smtp = SmtpProvider(configured.smtp)
        stack.push_async_callback(smtp.aclose)
        providers[smtp.name] = smtp
    return providers

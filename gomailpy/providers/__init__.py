"""Email providers behind one interface (`base.Provider`): SES, SendGrid, SMTP, Mailgun.

    async with AsyncExitStack() as stack:
        providers = await open_providers(stack, settings)   # {"ses-eu": ..., "relay-a": ...}
        result = await providers["ses-eu"].send(envelope)

Each enabled instance (`providers:`, gomailpy.config.providers) is built once per process,
entered on the stack (every provider is a one-shot async context manager) and closed when the
stack closes. A provider's `send` is plain: the pipeline (pipeline.sending.dispatch) bounds each
call with the provider's `timeout_s` and guards it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from gomailpy.config.providers import MailgunSettings, SendGridSettings, SesSettings
from gomailpy.config.settings import Settings
from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.providers.mailgun import MailgunProvider
from gomailpy.providers.sendgrid import SendGridProvider
from gomailpy.providers.ses import SesProvider
from gomailpy.providers.smtp import SmtpProvider

__all__ = [
    "MailgunProvider",
    "Outcome",
    "Provider",
    "SendGridProvider",
    "SendResult",
    "SesProvider",
    "SmtpProvider",
    "open_providers",
]


async def open_providers(stack: AsyncExitStack, settings: Settings) -> dict[str, Provider]:
    """Build every enabled provider instance (name -> provider), in the order configured; each
    is closed when `stack` closes."""
    providers: dict[str, Provider] = {}
    numbers = {name: n for n, name in enumerate(settings.providers.names())}
    for instance in settings.providers.enabled().values():
        provider: Provider
        if isinstance(instance, SesSettings):
            provider = SesProvider(instance, settings.aws, events=settings.events)
        elif isinstance(instance, SendGridSettings):
            provider = SendGridProvider(instance)
        elif isinstance(instance, MailgunSettings):
            provider = MailgunProvider(instance)
        else:
            where = f"providers[{numbers[instance.name]}] ({instance.name})"  # as check-config
            provider = SmtpProvider(instance, settings.events, settings.bulk, where=where)
        providers[instance.name] = await stack.enter_async_context(provider)
    return providers

"""Email providers behind one interface (`base.Provider`): SES, SendGrid, SMTP."""

from gomailpy.providers.base import Outcome, Provider, SendResult

__all__ = ["Outcome", "Provider", "SendResult"]

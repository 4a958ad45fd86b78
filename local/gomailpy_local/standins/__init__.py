"""Stand-ins at the provider network boundary: real protocols, local servers, faults on demand.

Used by the tests, by `gomail up` (a local relay and a local SendGrid) and by the fault suite:

- `SmtpStandIn`: an SMTP server (aiosmtpd) that records messages; modes ok/fail/reject/
  relay-denied/hang/block-domain (policy refusals for @blocked.example.net only).
- `SendGridStandIn`: an HTTP server for `POST /v3/mail/send`; modes ok/fail/throttle/hang, and
  the control API (`/_standin/...`) for itself and any other stand-in.
- `MailgunStandIn`: an HTTP server for `POST /v3/<domain>/messages.mime` (Basic auth, multipart
  `to` + `message`), modes ok/fail/throttle/hang/reject/sandbox, and Mailgun's signed webhook.

SES needs no stand-in here: LocalStack serves it.
"""

from gomailpy_local.standins.control import Controllable, add_control_routes
from gomailpy_local.standins.mailgun import MailgunStandIn, ReceivedMime
from gomailpy_local.standins.sendgrid import ReceivedPayload, SendGridStandIn
from gomailpy_local.standins.smtp import ReceivedMail, SmtpStandIn

__all__ = [
    "Controllable",
    "MailgunStandIn",
    "ReceivedMail",
    "ReceivedMime",
    "ReceivedPayload",
    "SendGridStandIn",
    "SmtpStandIn",
    "add_control_routes",
]

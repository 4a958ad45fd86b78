"""What a relay mails back about a message: DSNs (RFC 3464) and complaints (ARF, RFC 5965).

    data = delivery_report(original, "bounce@example.org", action="failed")   # bytes, CRLF
    data = complaint_report(original, "complain@example.org")
    await mail_report(data, to="bounces+<id>@bounces.example.com", host=..., port=...)

Shaped like Postfix's: a text notification, a `message/delivery-status` part (one per-message
block, one block per recipient) and the returned message (`message/rfc822`). The SMTP stand-in
sends them to a message's envelope sender for recipients that ask for it; the tests use them as
real-world-shaped input.
"""

from __future__ import annotations

import asyncio
import uuid
from email import policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import formatdate

import aiosmtplib

REPORTING_MTA = "standin.localhost"
_DSN = {
    # action -> (status, diagnostic, subject)
    "failed": (
        "5.1.1",
        "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown (stand-in)",
        "Undelivered Mail Returned to Sender",
    ),
    "delayed": (
        "4.4.1",
        "X-Postfix; connect to mx.invalid[192.0.2.1]:25: Connection timed out (stand-in)",
        "Delayed Mail (still being retried)",
    ),
}


def _block(**fields: str) -> Message:
    block = Message()
    for name, value in fields.items():
        block[name.replace("_", "-")] = value
    return block


def _report(kind: str, to: str, subject: str, text: str) -> MIMEMultipart:
    report = MIMEMultipart("report", report_type=kind)
    report["From"] = f"MAILER-DAEMON@{REPORTING_MTA} (Mail Delivery System)"
    report["To"] = to
    report["Subject"] = subject
    report["Date"] = formatdate(usegmt=True)
    report["Message-ID"] = f"<{uuid.uuid4().hex}@{REPORTING_MTA}>"
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText(text))
    return report


def _original(data: bytes) -> MIMEMessage:
    return MIMEMessage(BytesParser(policy=policy.compat32).parsebytes(data))


def delivery_report(original: bytes, recipient: str, *, action: str = "failed", to: str) -> bytes:
    """A DSN to `to` about `recipient` of the message `original`: `failed` (5.1.1) or
    `delayed` (4.4.1)."""
    status, diagnostic, subject = _DSN[action]
    report = _report(
        "delivery-status",
        to,
        subject,
        f"This is the mail system at host {REPORTING_MTA}.\n\n"
        f"<{recipient}>: {diagnostic.partition('; ')[2]}\n",
    )
    status_part = MIMEBase("message", "delivery-status")
    del status_part["MIME-Version"]
    status_part.set_payload(
        [
            _block(
                Reporting_MTA=f"dns; {REPORTING_MTA}",
                Arrival_Date=formatdate(usegmt=True),
            ),
            _block(
                Final_Recipient=f"rfc822; {recipient}",
                Original_Recipient=f"rfc822;{recipient}",
                Action=action,
                Status=status,
                Remote_MTA="dns; mx.invalid",
                Diagnostic_Code=diagnostic.format(rcpt=recipient),
            ),
        ]
    )
    report.attach(status_part)
    report.attach(_original(original))
    return report.as_bytes(policy=policy.SMTP)


def complaint_report(original: bytes, recipient: str, *, to: str) -> bytes:
    """An ARF abuse report to `to` (the original's envelope sender) by `recipient` about the
    message `original`."""
    report = _report(
        "feedback-report",
        to,
        "Abuse report",
        f"This is an email abuse report for a message delivered to {recipient}.\n",
    )
    feedback = MIMEBase("message", "feedback-report")
    del feedback["MIME-Version"]
    feedback.set_payload(
        [
            _block(
                Feedback_Type="abuse",
                User_Agent="gomailpy-standin/1.0",
                Version="1",
                Original_Mail_From=f"<{to}>",
                Original_Rcpt_To=f"<{recipient}>",
                Arrival_Date=formatdate(usegmt=True),
                Reporting_MTA=f"dns; {REPORTING_MTA}",
            )
        ]
    )
    report.attach(feedback)
    report.attach(_original(original))
    return report.as_bytes(policy=policy.SMTP)


async def mail_report(
    data: bytes, *, to: str, host: str, port: int, retry_delays_s: tuple[float, ...] = ()
) -> None:
    """Send a report with the null sender (`MAIL FROM:<>`, as every DSN), trying again after
    each of `retry_delays_s` while the server is away or answers 4xx; raises the last error."""
    for delay_s in (*retry_delays_s, None):
        try:
            # SMTP.sendmail, not aiosmtplib.send, which refuses an empty sender.
            async with aiosmtplib.SMTP(hostname=host, port=port) as client:
                await client.sendmail("", [to], data)
            return
        except (OSError, aiosmtplib.SMTPException) as exc:
            permanent = isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500
            refused = isinstance(exc, aiosmtplib.SMTPRecipientsRefused)
            if delay_s is None or permanent or refused:
                raise
            await asyncio.sleep(delay_s)

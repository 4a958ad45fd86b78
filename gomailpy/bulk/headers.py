"""`List-Unsubscribe` (RFC 2369) and `List-Unsubscribe-Post` (RFC 8058) for one email.

    headers = unsubscribe_headers(envelope, settings.bulk, bounce_domain, now)

    List-Unsubscribe: <https://mail.example.com/u/TOKEN>, <mailto:unsubscribe+T@bounces.example>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

The token names the email, one recipient and the email's group. An email is one message for all
its recipients, so its header can name one: the first To (else the first Cc, else Bcc).
Per-recipient links need one email per recipient: one v3 personalization each, or one
`POST /email/send` each (what bulk senders do anyway). The `mailto:` is there when the bounce
listener takes mail (`events.enabled`); its short token is checked against the unsubscribe
mail's sender (gomailpy.bulk.tokens.sign_mailto).

Headers a request set itself (`List-Unsubscribe` is on the allow-list) are replaced: the
one-click URL must be one this server can honour.
"""

from __future__ import annotations

from gomailpy.bulk.tokens import Kind, Link, sign, sign_mailto
from gomailpy.config.bulk import BulkSettings
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import Address

MAILTO_PREFIX = "unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"


def named_recipient(envelope: Envelope) -> Address | None:
    """The recipient an email's unsubscribe link names (see the module docstring)."""
    email = envelope.email
    for addresses in (email.to, email.cc, email.bcc):
        if addresses:
            return addresses[0]
    return None


def wants_unsubscribe(envelope: Envelope, settings: BulkSettings) -> bool:
    asked = envelope.bulk is not None and envelope.bulk.unsubscribe
    return settings.enabled and (asked or settings.wants_unsubscribe(envelope.email.sender.email))


def unsubscribe_url(settings: BulkSettings, link: Link, now: float) -> str:
    return f"{settings.public_url}/u/{sign(link, settings.key(), now)}"


def unsubscribe_headers(
    envelope: Envelope, settings: BulkSettings, bounce_domain: str | None, now: float
) -> dict[str, str]:
    """The two headers for `envelope`, or {} when it wants none (or bulk is off)."""
    recipient = named_recipient(envelope)
    if recipient is None or not wants_unsubscribe(envelope, settings):
        return {}
    group = envelope.bulk.group if envelope.bulk is not None else None
    shown = ",".join(map(str, envelope.bulk.groups_to_display)) if envelope.bulk else ""
    # The URL field of an unsubscribe token carries the groups its page offers (api.views.bulk).
    link = Link(Kind.UNSUBSCRIBE, envelope.id, recipient.email.lower(), group, url=shown)
    targets = [f"<{unsubscribe_url(settings, link, now)}>"]
    if bounce_domain:
        token = sign_mailto(recipient.email, group, settings.key(), now)
        targets.append(f"<mailto:{MAILTO_PREFIX}+{token}@{bounce_domain}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK}


def with_unsubscribe(
    envelope: Envelope, settings: BulkSettings, bounce_domain: str | None, now: float
) -> Envelope:
    """`envelope` with its unsubscribe headers in place (the same envelope when none)."""
    headers = unsubscribe_headers(envelope, settings, bounce_domain, now)
    if not headers:
        return envelope
    kept = {
        k: v
        for k, v in envelope.email.headers.items()
        if k.lower() not in ("list-unsubscribe", "list-unsubscribe-post")
    }
    email = envelope.email.model_copy(update={"headers": {**kept, **headers}})
    return envelope.model_copy(update={"email": email})

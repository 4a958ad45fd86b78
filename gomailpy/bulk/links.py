"""Open and click tracking done by gomailpy itself, for the SMTP path (pure: no I/O).

    html = tracked_html(html, link_for, pixel_url)

Every `href` of an `<a>` tag in the HTML part whose URL is http(s) is replaced by a redirect
URL `<public_url>/t/c/<token>`, the token signing the message id, the recipient and the URL
itself: the redirect goes only where the email pointed (no open redirect). Links to the API
itself (the unsubscribe link) and other schemes (mailto:, tel:, #anchors) are left alone. A 1×1
GIF `<img>` of `<public_url>/t/o/<token>` goes before `</body>` (at the end when there is none).
The text part is left as it is: rewritten plain-text links are what spam filters distrust.

SES and SendGrid track for themselves (a configuration set's Open and Click event
destinations; SendGrid's tracking_settings), so `track_envelope` is used by the SMTP provider
only.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Callable

from gomailpy.bulk.headers import named_recipient
from gomailpy.bulk.tokens import Kind, Link, sign
from gomailpy.config.bulk import BulkSettings
from gomailpy.email.envelope import Envelope

# <a ... href="..."> or href='...' (or unquoted); the URL is group 2, 3 or 4.
_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.IGNORECASE
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)  # 1x1, transparent


def tracked_html(
    html: str, link_for: Callable[[str], str] | None, pixel_url: str | None, own: str = ""
) -> str:
    """`html` with its links rewritten by `link_for` (None: not) and a pixel (None: none)."""
    if link_for is not None:

        def rewrite(match: re.Match[str]) -> str:
            quoted = next(g for g in match.groups()[1:] if g is not None)
            url = htmlmod.unescape(quoted).strip()
            lowered = url.lower()
            if not lowered.startswith(("http://", "https://")) or (own and url.startswith(own)):
                return match.group(0)
            return f'{match.group(1)}"{htmlmod.escape(link_for(url))}"'

        html = _HREF.sub(rewrite, html)
    if pixel_url is not None:
        pixel = (
            f'<img src="{htmlmod.escape(pixel_url)}" width="1" height="1" alt=""'
            ' style="display:block;width:1px;height:1px;border:0" />'
        )
        found = list(_BODY_END.finditer(html))
        if found:
            at = found[-1].start()
            html = html[:at] + pixel + html[at:]
        else:
            html += pixel
    return html


def track_envelope(envelope: Envelope, settings: BulkSettings, now: float) -> Envelope:
    """`envelope` with its HTML tracked as it asks (the same envelope when it asks nothing)."""
    options = envelope.bulk
    html = envelope.email.html
    recipient = named_recipient(envelope)
    if (
        options is None
        or not (options.opens or options.clicks)
        or not settings.enabled
        or html is None
        or recipient is None
    ):
        return envelope
    key = settings.key()
    base = settings.public_url or ""
    address = recipient.email.lower()

    def link_for(url: str) -> str:
        return f"{base}/t/c/{sign(Link(Kind.CLICK, envelope.id, address, url=url), key, now)}"

    pixel = None
    if options.opens:
        pixel = f"{base}/t/o/{sign(Link(Kind.OPEN, envelope.id, address), key, now)}"
    tracked = tracked_html(html, link_for if options.clicks else None, pixel, own=base + "/")
    email = envelope.email.model_copy(update={"html": tracked})
    return envelope.model_copy(update={"email": email})

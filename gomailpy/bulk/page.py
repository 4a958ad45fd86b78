"""The page a GET of an unsubscribe link shows: it never unsubscribes (link scanners and mail
proxies fetch every link), it asks, and its button POSTs (pure: returns HTML).

Everything shown is escaped; there is no script, inline or not, so a strict
Content-Security-Policy (`default-src 'none'; style-src 'unsafe-inline'; form-action 'self'`)
holds. The form posts `List-Unsubscribe=One-Click` plus `from=page` and one `group` per ticked
box (the email's own group ticked), or `all=1` to leave everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from gomailpy.bulk.groups import Group

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
    "button{font-size:1rem;padding:.5rem 1rem}label{display:block;margin:.3rem 0}"
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def confirmation_page(
    action: str, recipient: str, group: Group | None, displayed: Sequence[Group]
) -> str:
    """The form for the link whose POST URL is `action` (a path), for `recipient`."""
    boxes = []
    shown = [g for g in displayed if group is None or g.id != group.id]
    for choice in ([group] if group is not None else []) + shown:
        checked = " checked" if group is not None and choice.id == group.id else ""
        about = f" — {escape(choice.description)}" if choice.description else ""
        boxes.append(
            f'<label><input type=checkbox name=group value="{choice.id}"{checked}>'
            f" {escape(choice.label)}{about}</label>"
        )
    every = "<label><input type=checkbox name=all value=1{}> Everything from this sender</label>"
    boxes.append(every.format("" if group is not None else " checked"))
    body = (
        f"<p>Stop emails to <strong>{escape(recipient)}</strong>:</p>"
        f'<form method=post action="{escape(action)}">'
        '<input type=hidden name="List-Unsubscribe" value="One-Click">'
        "<input type=hidden name=from value=page>"
        f"{''.join(boxes)}<p><button type=submit>Unsubscribe</button></p></form>"
    )
    return _page("Unsubscribe", body)


def done_page(recipient: str, left: Sequence[str]) -> str:
    """What the POST from the page answers: what `recipient` left (names), or nothing."""
    if not left:
        return _page("Nothing changed", f"<p>{escape(recipient)} is still subscribed.</p>")
    items = "".join(f"<li>{escape(name)}</li>" for name in left)
    return _page("Unsubscribed", f"<p>{escape(recipient)} will no longer get:</p><ul>{items}</ul>")

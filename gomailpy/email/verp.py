"""VERP: the envelope sender of an SMTP send names its email, so a bounce finds its way back.

    verp_address("0b6c…", "bounces.example.com")       # "bounces+0b6c…@bounces.example.com"
    message_id_from("bounces+0b6c…@bounces.example.com", "bounces.example.com")   # "0b6c…"
    verp_address("0b6c…", "bounces.example.com", instance="relay-b")  # "bounces+0b6c…=relay-b@…"
    instance_from("bounces+0b6c…=relay-b@bounces.example.com")       # "relay-b"

A relay that cannot deliver sends its report (a DSN, RFC 3464) to the envelope sender
(Return-Path); with VERP that address carries gomailpy's message id, so the bounce listener
(gomailpy.listeners.bounces) and the parser (gomailpy.feedback.dsn) know which email, whatever the
report itself quotes. Message ids are UUIDs or hex: they fit a local part as they are. An id that
would not (another character, or too long for the 64 octets of a local part) gets no VERP
address: such an email is sent with its own sender as envelope sender, as without events.
The provider instance (an SMTP relay's `providers[].name`) follows the id after `=` when it
fits the local part, so a report also finds the relay that sent the email; else it is left out,
as it is for a relay named `smtp` (its reports are the kind's, as before instances had names).
"""

from __future__ import annotations

import re

PREFIX = "bounces"
_SEPARATOR = "+"
# Letters, digits, "-" and "_": safe in a dot-atom local part, and no relay rewrites them.
# 64 octets is the local part's limit (RFC 5321 4.5.3.1.1).
_SAFE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{64 - len(PREFIX) - 2}}}")
_INSTANCE_SEPARATOR = "="
_SAFE_INSTANCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_MAX_LOCAL = 64


def verp_address(message_id: str, bounce_domain: str, instance: str | None = None) -> str | None:
    """The envelope sender for the email `message_id` sent by `instance`; None when the id
    cannot be encoded."""
    if not _SAFE_ID.fullmatch(message_id):
        return None
    local = f"{PREFIX}{_SEPARATOR}{message_id}"
    # A relay named after its kind (the one of the three-key form) is the kind's: not named.
    if instance is not None and instance != "smtp" and _SAFE_INSTANCE.fullmatch(instance):
        tagged = f"{local}{_INSTANCE_SEPARATOR}{instance}"
        local = tagged if len(tagged) <= _MAX_LOCAL else local
    return f"{local}@{bounce_domain}"


def is_bounce_address(address: str, bounce_domain: str) -> bool:
    """Whether the listener takes mail for `address`: `bounces+<id>@<domain>`, or the plain
    `bounces@<domain>` that feedback loops (complaints) are registered with."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if domain.lower() != bounce_domain.lower():
        return False
    return local.lower() == PREFIX or message_id_from(address, bounce_domain) is not None


def message_id_from(address: str, bounce_domain: str | None = None) -> str | None:
    """The message id a VERP `address` carries; None for any other address. `bounce_domain`
    None: at any domain (for reports the listener has already checked)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if bounce_domain is not None and domain.lower() != bounce_domain.lower():
        return None
    head, separator, message_id = local.partition(_SEPARATOR)
    message_id = message_id.partition(_INSTANCE_SEPARATOR)[0]
    if head.lower() != PREFIX or not separator or not _SAFE_ID.fullmatch(message_id):
        return None
    return message_id


def instance_from(address: str) -> str | None:
    """The provider instance a VERP `address` names; None when it names none."""
    local = address.strip().strip("<>").rpartition("@")[0]
    if message_id_from(address) is None:
        return None
    instance = local.partition(_INSTANCE_SEPARATOR)[2].lower()
    return instance if _SAFE_INSTANCE.fullmatch(instance) else None

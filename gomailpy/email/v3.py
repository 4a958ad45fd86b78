"""SendGrid's v3 `/mail/send` request, translated into gomailpy envelopes (pure: no I/O).

    mail = translate(body, message_id="<X-Message-Id>", now=time.time())
    mail.envelopes      # one per personalization, ids "<X-Message-Id>_0", "_1", ...
    mail.sandbox        # mail_settings.sandbox_mode.enable: validate only, queue nothing

Each personalization becomes one email: its recipients, its subject, headers, substitutions,
dynamic_template_data, custom_args and send_at over the request's own. Every email then goes
through the very validation of `POST /email/send` (gomailpy.email.models: addresses, the header
allow-list, no CR/LF in header-bound fields, attachment limits), with the problems reported in
SendGrid's shape, `{"message", "field", "help"}`, naming the v3 field. Fields SendGrid has and
gomailpy cannot honour (ip_pool_name, batch_id...) are refused by name rather than
silently dropped, as is any unknown field. `asm` and `tracking_settings` are read by
gomailpy.email.bulk.v3 into each envelope's `bulk` options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gomailpy.email.bulk.options import BulkOptions
from gomailpy.email.bulk.v3 import read_bulk
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import Address, Email, parse_send_request
from gomailpy.email.v3_fields import (
    Problem,
    Problems,
    V3RequestError,
    read_address,
    read_addresses,
    read_attachments,
    read_categories,
    read_content,
    read_send_at,
    read_strings,
    unknown_keys,
)
from gomailpy.errors import InvalidEmailError, MalformedRequestError

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # in all, across personalizations
MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_CUSTOM_ARGS_BYTES = 10_000

_TOP = {
    "personalizations", "from", "reply_to", "reply_to_list", "subject", "content",
    "attachments", "template_id", "headers", "categories", "custom_args", "send_at",
    "batch_id", "mail_settings", "asm", "tracking_settings",
}  # fmt: skip
_PERSONALIZATION = {
    "to", "cc", "bcc", "from", "subject", "headers", "substitutions",
    "dynamic_template_data", "custom_args", "send_at",
}  # fmt: skip
_MAIL_SETTINGS = {"sandbox_mode"}
# gomail's field names (gomailpy.email.models) -> the v3 field they came from; {i}: personalization.
_FIELDS = {
    "fromEmail": "from.email",
    "fromName": "from.name",
    "toEmail": "personalizations.{i}.to",
    "toName": "personalizations.{i}.to",
    "to": "personalizations.{i}.to",
    "cc": "personalizations.{i}.cc",
    "bcc": "personalizations.{i}.bcc",
    "replyTo": "reply_to",
    "subject": "subject",
    "body": "content",
    "html": "content",
    "headers": "headers",
    "attachments": "attachments",
    "templateId": "template_id",
    "templateData": "personalizations.{i}.dynamic_template_data",
}


def part_id(message_id: str, index: int) -> str:
    """The message id of personalization `index`: `<X-Message-Id>_<index>`. Not a dot, which
    SES tag values refuse; an X-Message-Id (hex and dashes) has no underscore."""
    return f"{message_id}_{index}"


@dataclass(frozen=True, slots=True)
class V3Mail:
    envelopes: list[Envelope]
    sandbox: bool = False


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


@dataclass(frozen=True, slots=True)
class _Common:
    """What every personalization shares, read once from the request."""

    sender: dict[str, str] | None
    reply_to: dict[str, str] | None
    subject: Any
    parts: dict[str, str]
    attachments: list[dict[str, Any]]
    template_id: Any
    headers: dict[str, str]
    categories: list[str]
    custom_args: dict[str, str]
    send_at: float | None
    bulk: BulkOptions | None = None


def _common(data: dict[str, Any], now: float, problems: Problems) -> _Common:
    reply_to = read_address(data["reply_to"], "reply_to", problems) if "reply_to" in data else None
    reply_list = read_addresses(data.get("reply_to_list"), "reply_to_list", problems)
    if reply_to is not None and reply_list:
        problems.add("give reply_to or reply_to_list, not both", "reply_to_list")
    elif len(reply_list) > 1:
        problems.add("gomailpy sends one reply-to address: give at most one", "reply_to_list")
    elif reply_list:
        reply_to = reply_list[0]
    common = _Common(
        sender=read_address(data.get("from"), "from", problems),
        reply_to=reply_to,
        subject=data.get("subject"),
        parts=read_content(data, problems),
        attachments=read_attachments(data, problems),
        template_id=data.get("template_id"),
        headers=read_strings(data.get("headers"), "headers", problems),
        categories=read_categories(data, problems),
        custom_args=read_strings(data.get("custom_args"), "custom_args", problems),
        send_at=read_send_at(data.get("send_at"), "send_at", now, problems),
        bulk=read_bulk(data, problems),
    )
    if not common.parts and common.template_id is None:
        problems.add(
            "Unless a valid template_id is provided, the content parameter is required.",
            "content",
        )
    if common.subject is not None and not isinstance(common.subject, str):
        problems.add("must be a string", "subject")
    mail_settings = data.get("mail_settings", {})
    if not isinstance(mail_settings, dict):
        problems.add("must be an object", "mail_settings")
    else:
        unknown_keys(mail_settings, _MAIL_SETTINGS, "mail_settings", problems)
    return common


def _sandbox(data: dict[str, Any]) -> bool:
    sandbox = data.get("mail_settings", {}).get("sandbox_mode", {})
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


def _extras(
    item: dict[str, Any], where: str, common: _Common, now: float, problems: Problems
) -> tuple[dict[str, str], float | None]:
    """The personalization's custom_args (over the request's) and send time."""
    custom_args = {
        **common.custom_args,
        **read_strings(item.get("custom_args"), f"{where}.custom_args", problems),
    }
    if len(json.dumps(custom_args).encode()) > MAX_CUSTOM_ARGS_BYTES:
        problems.add(f"custom_args: at most {MAX_CUSTOM_ARGS_BYTES} bytes in all", where)
    if "send_at" not in item:
        return custom_args, common.send_at
    return custom_args, read_send_at(item["send_at"], f"{where}.send_at", now, problems)


def _validate(
    fields: dict[str, Any], item: dict[str, Any], i: int, problems: Problems
) -> Email | None:
    """`POST /email/send`'s validation of one email, its problems named by v3 field."""
    try:
        return parse_send_request({"email": fields})
    except InvalidEmailError as exc:
        for name, message in exc.errors.items():
            path = _FIELDS.get(name, name).format(i=i)
            if name in ("subject", "headers") and name in item:
                path = f"personalizations.{i}.{name}"
            problems.add(message, path)
    except MalformedRequestError as exc:  # not reachable with the fields built here
        problems.add(str(exc), f"personalizations.{i}")
    return None


def _personalization(
    item: Any, i: int, common: _Common, message_id: str, now: float, problems: Problems
) -> Envelope | None:
    where = f"personalizations.{i}"
    if not isinstance(item, dict):
        problems.add("must be an object", where)
        return None
    unknown_keys(item, _PERSONALIZATION, where, problems)
    to = read_addresses(item.get("to"), f"{where}.to", problems)
    if not to:
        problems.add("The to array is required for all personalization objects", f"{where}.to")
    sender = (
        read_address(item["from"], f"{where}.from", problems) if "from" in item else common.sender
    )
    substitutions = read_strings(item.get("substitutions"), f"{where}.substitutions", problems)
    template_data = item.get("dynamic_template_data", {})
    if not isinstance(template_data, dict):
        problems.add("must be an object", f"{where}.dynamic_template_data")
    elif template_data and common.template_id is None:
        problems.add("dynamic_template_data needs a template_id", f"{where}.dynamic_template_data")
    subject = item.get("subject", common.subject)
    if subject is not None and not isinstance(subject, str):
        problems.add("must be a string", f"{where}.subject")
    custom_args, send_at = _extras(item, where, common, now, problems)
    if sender is None or not to or not isinstance(template_data, dict):
        return None
    fields: dict[str, Any] = {
        "fromEmail": sender["email"],
        "fromName": sender["name"],
        "toEmail": to[0]["email"],
        "toName": to[0]["name"],
        "to": to[1:],
        "cc": read_addresses(item.get("cc"), f"{where}.cc", problems),
        "bcc": read_addresses(item.get("bcc"), f"{where}.bcc", problems),
        "subject": _substitute(subject or "", substitutions),
        "body": _substitute(common.parts.get("text/plain", ""), substitutions),
        "html": _substitute(common.parts.get("text/html", ""), substitutions),
        "headers": {
            **common.headers,
            **read_strings(item.get("headers"), f"{where}.headers", problems),
        },
        "attachments": common.attachments,
    }
    if common.reply_to is not None:
        fields["replyTo"] = common.reply_to["email"]
    if common.template_id is not None:
        fields.update(templateId=common.template_id, templateData=template_data)
    email = _validate(fields, item, i, problems)
    if email is None:
        return None
    if common.reply_to is not None and common.reply_to["name"] and email.reply_to is not None:
        named = Address(email=email.reply_to.email, name=common.reply_to["name"])
        email = email.model_copy(update={"reply_to": named})
    return Envelope(
        id=part_id(message_id, i),
        created_at=datetime.fromtimestamp(now, UTC),
        email=email,
        custom_args=custom_args or None,
        categories=common.categories or None,
        send_at=send_at,
        bulk=common.bulk,
    )


def _check_recipients(emails: list[tuple[int, Email]], problems: Problems) -> None:
    seen: set[str] = set()
    total = 0
    for i, email in emails:
        for kind, addresses in (("to", email.to), ("cc", email.cc), ("bcc", email.bcc)):
            for address in addresses:
                total += 1
                key = address.email.lower()
                if key in seen:
                    where = f"personalizations.{i}.{kind}"
                    problems.add(
                        "Each email address in the personalization block should be unique"
                        f" between to, cc, and bcc. We found the first duplicate instance of"
                        f" [{address.email}] in the {where} field.",
                        where,
                    )
                seen.add(key)
    if total > MAX_RECIPIENTS:
        problems.add(
            f"The total number of recipients must be no more than {MAX_RECIPIENTS}.",
            "personalizations",
        )


def translate(data: Any, *, message_id: str, now: float) -> V3Mail:
    """A decoded v3 body as envelopes, or `V3RequestError` listing every problem found."""
    problems = Problems()
    if not isinstance(data, dict):
        raise V3RequestError([Problem("The request body must be a JSON object", None)])
    unknown_keys(data, _TOP, "", problems)
    personalizations = data.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.add(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        problems.add(
            f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per API request.",
            "personalizations",
        )
    if data.get("from") is None:
        problems.add("The from object must be provided for every email send.", "from")
    common = _common(data, now, problems)
    problems.raise_if_any()
    envelopes: list[Envelope] = []
    for i, item in enumerate(personalizations):
        envelope = _personalization(item, i, common, message_id, now, problems)
        if envelope is not None:
            envelopes.append(envelope)
    _check_recipients([(int(e.id.rsplit("_", 1)[1]), e.email) for e in envelopes], problems)
    problems.raise_if_any()
    return V3Mail(envelopes, sandbox=_sandbox(data))

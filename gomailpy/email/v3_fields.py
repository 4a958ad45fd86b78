"""Reading the parts of a SendGrid v3 request: addresses, content, attachments, categories,
string maps, each checked for its shape; problems collected in SendGrid's error shape
(`{"message", "field", "help"}`) rather than raised one by one. Used by gomailpy.email.v3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gomailpy.email.schedule import SendAtError, parse_send_at
from gomailpy.errors import GomailError

MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
HELP = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send"
UNSUPPORTED = {
    "ip_pool_name": "gomailpy chooses the provider, so there is no IP pool to name",
    "sections": "legacy sections are not supported; use a template (template_id)",
    "batch_id": "batches are not supported; cancel a scheduled email with"
    " DELETE /email/{messageId}/schedule",
}


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    field: str | None = None
    help: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field, "help": self.help}


class V3RequestError(GomailError):
    """A v3 request gomailpy refuses; `problems` in SendGrid's shape, `status` 400 (or 413)."""

    def __init__(self, problems: list[Problem], status: int = 400) -> None:
        self.problems = problems
        self.status = status
        super().__init__("; ".join(p.message for p in problems))


@dataclass
class Problems:
    found: list[Problem] = field(default_factory=list)

    def add(self, message: str, where: str | None) -> None:
        problem = Problem(message, where, HELP if where else None)
        if problem not in self.found:
            self.found.append(problem)

    def raise_if_any(self) -> None:
        if self.found:
            raise V3RequestError(self.found)


def unknown_keys(value: dict[str, Any], known: set[str], where: str, problems: Problems) -> None:
    for key in value:
        path = f"{where}.{key}" if where else key
        if key in UNSUPPORTED and not where:
            problems.add(f"{key} is not supported: {UNSUPPORTED[key]}", path)
        elif key not in known:
            problems.add(f"Unknown field {path!r}: gomailpy refuses what it would not send", path)


def read_address(value: Any, where: str, problems: Problems) -> dict[str, str] | None:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        problems.add("must be an object with an email (and optionally a name)", where)
        return None
    unknown_keys(value, {"email", "name"}, where, problems)
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        problems.add("name must be a string", f"{where}.name")
        return None
    return {"email": value["email"], "name": name or ""}


def read_addresses(value: Any, where: str, problems: Problems) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add("must be an array of {email, name} objects", where)
        return []
    found = [read_address(item, f"{where}.{n}", problems) for n, item in enumerate(value)]
    return [a for a in found if a is not None]


def read_strings(value: Any, where: str, problems: Problems) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.add("must be an object of string values", where)
        return {}
    return dict(value)


def read_content(data: dict[str, Any], problems: Problems) -> dict[str, str]:
    parts: dict[str, str] = {}
    content = data.get("content")
    if content is None:
        return parts
    if not isinstance(content, list):
        problems.add("must be an array of {type, value} objects", "content")
        return parts
    for n, part in enumerate(content):
        where = f"content.{n}"
        if not isinstance(part, dict) or not isinstance(part.get("value"), str):
            problems.add("must be an object with a type and a string value", where)
            continue
        unknown_keys(part, {"type", "value"}, where, problems)
        kind = part.get("type")
        if kind not in ("text/plain", "text/html"):
            problems.add("type must be text/plain or text/html", f"{where}.type")
        elif kind in parts:
            problems.add(f"only one {kind} part is allowed", f"{where}.type")
        else:
            parts[kind] = part["value"]
    return parts


def read_attachments(data: dict[str, Any], problems: Problems) -> list[dict[str, Any]]:
    value = data.get("attachments")
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add("must be an array of attachment objects", "attachments")
        return []
    out: list[dict[str, Any]] = []
    for n, item in enumerate(value):
        where = f"attachments.{n}"
        if not isinstance(item, dict):
            problems.add("must be an object with content and filename", where)
            continue
        unknown_keys(
            item, {"content", "filename", "type", "disposition", "content_id"}, where, problems
        )
        disposition = item.get("disposition", "attachment")
        if disposition not in ("attachment", "inline"):
            problems.add("disposition must be attachment or inline", f"{where}.disposition")
        if disposition == "inline" and not item.get("content_id"):
            problems.add("an inline attachment needs a content_id", f"{where}.content_id")
        gomail: dict[str, Any] = {
            "filename": item.get("filename"),
            "content": item.get("content"),
            "contentType": item.get("type") or "application/octet-stream",
        }
        if disposition == "inline" and item.get("content_id"):
            gomail["contentId"] = item["content_id"]
        out.append(gomail)
    return out


def read_categories(data: dict[str, Any], problems: Problems) -> list[str]:
    value = data.get("categories")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        problems.add("must be an array of non-empty strings", "categories")
        return []
    if len(value) > MAX_CATEGORIES:
        problems.add(f"at most {MAX_CATEGORIES} categories", "categories")
    if len(set(value)) != len(value):
        problems.add("each category only once", "categories")
    if any(len(c) > MAX_CATEGORY_CHARS or not c.isascii() for c in value):
        problems.add(f"categories are ASCII, at most {MAX_CATEGORY_CHARS} characters", "categories")
    return list(value)


def read_send_at(value: Any, where: str, now: float, problems: Problems) -> float | None:
    try:
        return parse_send_at(value, now, iso_allowed=False)
    except SendAtError as exc:
        problems.add(f"send_at {exc}", where)
        return None

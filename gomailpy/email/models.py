"""The email model: gomail's request in, one validated `Email` out.

The wire format keeps gomail's contract, `{"email": {"fromEmail", "fromName", "toEmail", "toName",
"subject", "body"}}` with fromEmail, toEmail and body required, and adds optional fields for full
emails (cc, bcc, extra recipients, HTML, reply-to, allow-listed headers, attachments).

`parse_send_request` turns a decoded JSON body into an `Email` or raises:
- `MalformedRequestError` when the body is not `{"email": {...}}` at all (the API answers 400);
- `InvalidEmailError` with one message per invalid field (the API answers 422).

Addresses are checked for syntax only (no DNS): upper case, long TLDs and internationalised
addresses are valid. Line breaks are refused in every header-bound field, so no request can add a
header of its own (gomail let CR/LF through into names and subject).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Annotated, Any

import email_validator
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gomailpy.email.charset import first_unqueueable
from gomailpy.email.parts import ContentId, TemplateId, TemplateRef, template_ref
from gomailpy.errors import InvalidEmailError, MalformedRequestError

# Limits. SES takes at most 50 recipients per message; names and subjects far past these are
# abuse, not mail.
MAX_NAME_LENGTH = 256
MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit
MAX_RECIPIENTS = 50
MAX_HEADERS = 20
MAX_HEADER_VALUE_LENGTH = 998
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS_TOTAL_BYTES = 20 * 1024 * 1024

# Custom headers a request may set. Everything structural (From, To, Subject, Date, Message-ID,
# MIME headers) is built by gomailpy and cannot be overridden.
ALLOWED_HEADERS = frozenset(
    {"list-unsubscribe", "list-unsubscribe-post", "in-reply-to", "references", "precedence"}
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")

FIELD_LABELS = {
    "fromEmail": "From email",
    "fromName": "From name",
    "toEmail": "To email",
    "toName": "To name",
    "to": "Additional recipients",
    "cc": "Cc",
    "bcc": "Bcc",
    "replyTo": "Reply-to",
    "subject": "Subject",
    "body": "Body",
    "html": "HTML body",
    "headers": "Headers",
    "attachments": "Attachments",
    "templateId": "Template id",
    "templateData": "Template data",
}


REQUIRED_ADDRESSES = ("fromEmail", "toEmail")


def _blank(value: Any) -> bool:
    """Empty, or only whitespace: what a form sends for a field left empty."""
    return not value or (isinstance(value, str) and not value.strip())


def unqueueable_fields(fields: dict[str, Any]) -> dict[str, str]:
    """A message per request field holding a character SQS refuses (gomailpy.email.charset)."""
    errors = {}
    for field, value in fields.items():
        char = first_unqueueable(value)
        if char is not None and field in FIELD_LABELS:
            errors[field] = (
                f"{FIELD_LABELS[field]} contains U+{ord(char):04X}, a character a queue cannot"
                " carry; remove it"
            )
    return errors


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("gomail", message)


def _no_line_breaks(value: str) -> str:
    # Three scans in C, not a generator: 4x cheaper, and it runs on every header field of
    # every email in the API and again in each node's decode (3.7 % of a node's CPU).
    if "\r" in value or "\n" in value or "\x00" in value:
        raise _fail("must not contain line breaks (CR or LF) or NUL characters")
    return value


# The same few senders and recipients come again and again; validation is the API's main cost
# (bench/README.md), so valid answers are remembered (invalid ones raise and are not).
@functools.lru_cache(maxsize=4096)
def normalize_address(value: str) -> str:
    """Syntax-check one address and return its normalized form (domain lower-cased, NFC)."""
    _no_line_breaks(value)
    plain = _plain_address(value)
    if plain is not None:
        return plain
    try:
        checked = email_validator.validate_email(
            value, check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise _fail(f"is not a valid email address: {exc}") from None
    return checked.normalized


# email_validator's own rules: a local part matching its dot-atom pattern is taken as it is.
_DOT_ATOM = email_validator.rfc_constants.DOT_ATOM_TEXT
_MAILBOX_NAMES = frozenset(email_validator.rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES)
_MAX_ADDRESS_LENGTH = email_validator.rfc_constants.EMAIL_MAX_LENGTH


def _plain_address(value: str) -> str | None:
    """The normalized form of a plain ASCII address (a dot-atom before the @), checking its
    domain in full once per domain; None: not plain, take email_validator's whole path. Most
    recipients are new, most domains are not (bench/README.md: validation was the API's main
    cost)."""
    local, at, domain = value.rpartition("@")
    if (
        not at
        or len(value) > _MAX_ADDRESS_LENGTH
        or not value.isascii()
        or not _DOT_ATOM.match(local)
        or local.lower() in _MAILBOX_NAMES
    ):
        return None
    checked = _plain_domain(domain)
    return None if checked is None else f"{local}@{checked}"


@functools.lru_cache(maxsize=1024)
def _plain_domain(domain: str) -> str | None:
    try:
        checked = email_validator.validate_email(
            f"a@{domain}", check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError:
        return None  # the whole path words the refusal
    return checked.domain if checked.domain == checked.ascii_domain else None


def _check_address(value: Any) -> Any:
    if isinstance(value, str):
        _no_line_breaks(value)  # before strip(), which would quietly remove a trailing CR/LF
        return normalize_address(value.strip())
    return value


def _check_name(value: Any) -> Any:
    if isinstance(value, str):
        _no_line_breaks(value)
        if len(value) > MAX_NAME_LENGTH:
            raise _fail(f"must be at most {MAX_NAME_LENGTH} characters")
    return value


AddressStr = Annotated[str, BeforeValidator(_check_address)]
NameStr = Annotated[str, BeforeValidator(_check_name)]


class Address(BaseModel):
    """One mailbox: an address and an optional display name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: AddressStr
    name: NameStr = ""


def _coerce_address(value: Any) -> Any:
    # A recipient may be given as "a@b.example" or {"email": "a@b.example", "name": "A"}.
    if isinstance(value, str):
        return {"email": value}
    return value


RecipientIn = Annotated[Address, BeforeValidator(_coerce_address)]


class Attachment(BaseModel):
    """A file attached to an email; `content` is base64 (as in the request and on the queue)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(alias="contentType")] = "application/octet-stream"
    content: str
    content_id: Annotated[ContentId | None, Field(alias="contentId")] = None  # inline: cid:

    @field_validator("filename")
    @classmethod
    def _filename_is_plain(cls, value: str) -> str:
        _no_line_breaks(value)
        if "/" in value or "\\" in value or value in {".", ".."}:
            raise _fail("must be a plain file name, without a path")
        return value

    @field_validator("content_type")
    @classmethod
    def _content_type_is_mime(cls, value: str) -> str:
        if not _CONTENT_TYPE.fullmatch(value):
            raise _fail("must be a MIME type such as application/pdf")
        return value.lower()

    @field_validator("content")
    @classmethod
    def _content_is_base64(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _fail("must be base64") from None
        if len(raw) > MAX_ATTACHMENT_BYTES:
            raise _fail(f"must be at most {MAX_ATTACHMENT_BYTES} bytes once decoded")
        return value

    def data(self) -> bytes:
        return base64.b64decode(self.content)

    @property
    def size(self) -> int:
        # base64 length without decoding: 3 bytes per 4 characters, minus padding
        return len(self.content) * 3 // 4 - self.content[-2:].count("=")


class Email(BaseModel):
    """A validated email, as it travels on a queue and reaches a provider.

    `to` and `cc` are the recipients every copy names; `bcc` ones receive a copy that names none
    of them. `to` may be empty when others remain (every To suppressed, or a message submitted
    over SMTP for Bcc recipients only): the copy then says `To: undisclosed-recipients:;`, and no
    Bcc recipient is ever made a To (gomailpy.email.mime, gomailpy.providers.sendgrid).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: Address
    to: list[Address] = []
    cc: list[Address] = []
    bcc: list[Address] = []
    reply_to: Address | None = None
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = {}
    attachments: list[Attachment] = []
    # Set: subject, text and html come from this template, rendered by the pipeline.
    template: TemplateRef | None = None
    # base64: a message submitted over SMTP, sent as is (gomailpy.email.submitted)
    raw: str | None = None

    @model_validator(mode="after")
    def _has_a_recipient(self) -> Email:
        if not (self.to or self.cc or self.bcc):
            raise ValueError("an email needs at least one recipient (to, cc or bcc)")
        return self

    @property
    def recipients(self) -> list[Address]:
        """Every envelope recipient: to, cc and bcc."""
        return [*self.to, *self.cc, *self.bcc]


class EmailRequest(BaseModel):
    """gomail's `email` object, extended. Field names are the request's (camelCase)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    from_email: Annotated[AddressStr, Field(alias="fromEmail")]
    from_name: Annotated[NameStr, Field(alias="fromName")] = ""
    to_email: Annotated[AddressStr, Field(alias="toEmail")]
    to_name: Annotated[NameStr, Field(alias="toName")] = ""
    to: list[RecipientIn] = []
    cc: list[RecipientIn] = []
    bcc: list[RecipientIn] = []
    reply_to: Annotated[AddressStr | None, Field(alias="replyTo")] = None
    subject: str = ""
    body: str = ""
    html: str = ""
    headers: dict[str, str] = {}
    attachments: list[Attachment] = []
    template_id: Annotated[TemplateId | None, Field(alias="templateId")] = None
    template_data: Annotated[dict[str, Any], Field(alias="templateData")] = {}

    @field_validator("subject")
    @classmethod
    def _subject_is_one_line(cls, value: str) -> str:
        _no_line_breaks(value)
        if len(value) > MAX_SUBJECT_LENGTH:
            raise _fail(f"must be at most {MAX_SUBJECT_LENGTH} characters")
        return value

    @field_validator("headers")
    @classmethod
    def _headers_allowed(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise _fail(f"at most {MAX_HEADERS} headers")
        for name, header_value in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise _fail(f"{name!r} is not a valid header name")
            if name.lower() not in ALLOWED_HEADERS and not name.lower().startswith("x-"):
                allowed = ", ".join(sorted(ALLOWED_HEADERS))
                raise _fail(f"{name!r} is not allowed; allowed: X-* and {allowed}")
            if any(ch in header_value for ch in "\r\n\x00"):
                raise _fail(f"{name} must not contain line breaks (CR or LF)")
            if len(header_value) > MAX_HEADER_VALUE_LENGTH:
                raise _fail(f"{name} must be at most {MAX_HEADER_VALUE_LENGTH} characters")
        return value

    @field_validator("attachments")
    @classmethod
    def _attachment_limits(cls, value: list[Attachment]) -> list[Attachment]:
        if len(value) > MAX_ATTACHMENTS:
            raise _fail(f"at most {MAX_ATTACHMENTS} attachments")
        if sum(a.size for a in value) > MAX_ATTACHMENTS_TOTAL_BYTES:
            raise _fail(f"at most {MAX_ATTACHMENTS_TOTAL_BYTES} bytes in all, once decoded")
        return value

    @model_validator(mode="after")
    def _limits_across_fields(self) -> EmailRequest:
        if 1 + len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise PydanticCustomError(
                "too_many_recipients", f"at most {MAX_RECIPIENTS} recipients in all"
            )
        return self

    def to_email_model(self) -> Email:
        # These fields passed Address's own checks above: build without checking them again.
        mailbox = Address.model_construct
        return Email(
            sender=mailbox(email=self.from_email, name=self.from_name),
            to=[mailbox(email=self.to_email, name=self.to_name), *self.to],
            cc=self.cc,
            bcc=self.bcc,
            reply_to=mailbox(email=self.reply_to) if self.reply_to else None,
            subject=self.subject,
            text=self.body or None,
            html=self.html or None,
            headers=self.headers,
            attachments=self.attachments,
            template=template_ref(self.template_id, self.template_data),
        )


def _field_message(error: Any) -> tuple[str, str]:
    """One pydantic error -> (request field, message a person can act on)."""
    loc = error["loc"]
    kind = error["type"]
    if kind == "too_many_recipients":
        return "toEmail", f"{error['msg']}"
    field = str(loc[0]) if loc else "email"
    label = FIELD_LABELS.get(field)
    if label is None or kind == "extra_forbidden" and len(loc) == 1:
        allowed = ", ".join(FIELD_LABELS)
        return field, f"Unknown field {field!r}; known fields are: {allowed}"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    if kind == "missing" and len(loc) == 1:
        return field, f"{label} is required"
    if kind == "gomail":
        return field, f"{label}{where} {error['msg']}"
    return field, f"{label}{where}: {error['msg']}"


def parse_send_request(data: Any) -> Email:
    """Validate a decoded `POST /email/send` body; see the module docstring for what it raises."""
    if not isinstance(data, dict) or not isinstance(data.get("email"), dict):
        raise MalformedRequestError('Body must be a JSON object of the form {"email": {...}}')
    if len(data) != 1:
        unknown = ", ".join(sorted(repr(k) for k in data if k != "email"))
        raise MalformedRequestError(f'Unknown top-level field(s) {unknown}; only "email" is read')
    fields = data["email"]
    errors: dict[str, str] = {}
    # Checked here rather than in a model validator so that it is reported together with every
    # other field's error (pydantic skips "after" validators once a field has failed).
    if _blank(fields.get("body")) and _blank(fields.get("html")) and not fields.get("templateId"):
        errors["body"] = "Body is required"
    for field in REQUIRED_ADDRESSES:  # "" and "  " are what forms send for an empty input
        value = fields.get(field)
        if isinstance(value, str) and not value.strip():
            errors[field] = f"{FIELD_LABELS[field]} is required"
    errors.update(unqueueable_fields(fields))
    try:
        request = EmailRequest.model_validate(fields)
    except ValidationError as exc:
        for error in exc.errors():
            field, message = _field_message(error)
            errors.setdefault(field, message)  # one message per field: the first is enough
    if errors:
        raise InvalidEmailError(errors)
    return request.to_email_model()

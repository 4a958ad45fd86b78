"""Parts of the email model for the other ways in (gomailpy.email.models uses them): a stored
template to render from, with its data, and the Content-ID of an inline attachment. Kept apart
so that models.py reads as gomail's contract."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# A stored template's id (gomailpy.email.templates): SendGrid's "d-…" ids fit, as do readable names.
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _template_id(value: str) -> str:
    if not TEMPLATE_ID.fullmatch(value):
        raise PydanticCustomError(
            "gomail", "must be 1 to 128 letters, digits, '_', '.', ':' or '-'"
        )
    return value


def _content_id(value: str) -> str:
    if not value or any(ch in value for ch in "\r\n\x00<> "):
        raise PydanticCustomError(
            "gomail", "must be a non-empty token without spaces, angle brackets or line breaks"
        )
    return value


TemplateId = Annotated[str, AfterValidator(_template_id)]
# Set on an attachment: an inline part that the HTML refers to as "cid:<content id>".
ContentId = Annotated[str, Field(max_length=255), AfterValidator(_content_id)]


class TemplateRef(BaseModel):
    """A stored template to render the email from (in the pipeline), and the data to render."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: TemplateId
    data: dict[str, Any] = {}


def template_ref(template_id: str | None, data: dict[str, Any]) -> TemplateRef | None:
    return TemplateRef(id=template_id, data=data) if template_id else None

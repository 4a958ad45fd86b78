"""What one email asks of gomailpy.bulk, carried on its envelope (`Envelope.bulk`).

`POST /email/send` takes them beside `email`, in gomail's camelCase:

    {"email": {...},
     "unsubscribe": {"groupId": 3, "groupsToDisplay": [3, 4]},   # or true: global
     "tracking": {"opens": true, "clicks": true}}

`/v3/mail/send` reads SendGrid's `asm` and `tracking_settings` into the same (gomailpy.email.v3).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gomailpy.errors import InvalidEmailError

GroupId = Annotated[int, Field(ge=1, le=2**32 - 1)]
MAX_GROUPS_TO_DISPLAY = 25  # SendGrid's limit


class BulkOptions(BaseModel):
    """`unsubscribe`: List-Unsubscribe headers (one-click); `group`: the unsubscribe group the
    email belongs to (None: an unsubscribe is global); `groups_to_display`: the groups the
    confirmation page offers; `opens`, `clicks`: tracking."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unsubscribe: bool = False
    group: GroupId | None = None
    groups_to_display: Annotated[list[GroupId], Field(max_length=MAX_GROUPS_TO_DISPLAY)] = []
    opens: bool = False
    clicks: bool = False

    @property
    def any(self) -> bool:
        return self.unsubscribe or self.opens or self.clicks


class _UnsubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_id: Annotated[GroupId | None, Field(alias="groupId")] = None
    groups_to_display: Annotated[
        list[GroupId], Field(alias="groupsToDisplay", max_length=MAX_GROUPS_TO_DISPLAY)
    ] = []


class _TrackingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opens: bool = False
    clicks: bool = False


def take_bulk_options(data: Any) -> BulkOptions | None:
    """Remove `unsubscribe` and `tracking` from a `POST /email/send` body and return them
    (None: neither given); InvalidEmailError naming the field when unusable."""
    if not isinstance(data, dict):
        return None
    unsubscribe = data.pop("unsubscribe", None)
    tracking = data.pop("tracking", None)
    if unsubscribe in (None, False) and tracking is None:
        return None
    errors: dict[str, str] = {}
    options: dict[str, Any] = {}
    if unsubscribe is True:
        options["unsubscribe"] = True
    elif unsubscribe not in (None, False):
        try:
            read = _UnsubscribeIn.model_validate(unsubscribe)
            options.update(
                unsubscribe=True, group=read.group_id, groups_to_display=read.groups_to_display
            )
        except ValidationError as exc:
            errors["unsubscribe"] = _message("Unsubscribe", exc)
    if tracking is not None:
        try:
            track = _TrackingIn.model_validate(tracking)
            options.update(opens=track.opens, clicks=track.clicks)
        except ValidationError as exc:
            errors["tracking"] = _message("Tracking", exc)
    if errors:
        raise InvalidEmailError(errors)
    return BulkOptions(**options)


def _message(label: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{label}{'.' + where if where else ''}: {first['msg']}"

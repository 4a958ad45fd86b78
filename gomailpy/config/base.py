"""The base of every settings section and the field types they share (gomailpy.config.settings)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveSeconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class Section(BaseModel):
    """A section of the settings tree: unknown keys are refused, defaults validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

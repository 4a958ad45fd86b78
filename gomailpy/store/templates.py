"""Stored templates on the status table: `tpl#<id>` items, and `tpl-index`, one item whose
string set lists every template id (never a scan of the table). The template itself, its check
and its rendering: gomailpy.email.templates."""

from __future__ import annotations

import time
from typing import Any

from gomailpy.email.templates import Template
from gomailpy.store.items import ItemTable

PREFIX = "tpl#"
INDEX = "tpl-index"  # one item whose string set lists every template id


class TemplateStore:
    """Templates on the status table (see the module docstring); errors of the table are
    `StoreError`s (a backend failure: try again)."""

    def __init__(self, table: ItemTable, clock: Any = time.time) -> None:
        self._table = table
        self._clock = clock

    async def put(self, template: Template) -> Template:
        """Store `template` (replacing one with the same id); return it with its time."""
        stored = Template(
            template.id, template.subject, template.html, template.text, self._clock()
        )
        await self._table.put(
            PREFIX + template.id,
            {
                "subject": stored.subject,
                "html": stored.html,
                "text": stored.text,
                "updated_at": stored.updated_at,
            },
        )
        await self._table.add_member(INDEX, template.id)
        return stored

    async def get(self, template_id: str) -> Template | None:
        item = await self._table.get(PREFIX + template_id)
        if item is None:
            return None
        return Template(
            id=template_id,
            subject=str(item.get("subject", "")),
            html=str(item.get("html", "")),
            text=str(item.get("text", "")),
            updated_at=float(item.get("updated_at", 0)),
        )

    async def list_ids(self) -> list[str]:
        return sorted(await self._table.members(INDEX))

    async def delete(self, template_id: str) -> bool:
        """Delete a template; False if there was none."""
        if await self._table.get(PREFIX + template_id) is None:
            return False
        await self._table.delete(PREFIX + template_id)
        await self._table.remove_member(INDEX, template_id)
        return True

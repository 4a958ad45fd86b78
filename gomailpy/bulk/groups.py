"""Unsubscribe groups (SendGrid's `asm` groups): what a recipient can leave without leaving all.

    groups = GroupStore(table)                  # the status table's small items (table_items)
    await groups.add(Group(3, "Newsletter", "Monthly news"))
    await groups.list()                         # by id
    await groups.remove(3)
    await groups.next_id()                      # for a group added without an id

A group is an item `asmgrp#<id>` (name, description), the ids kept as a set on `asmgrp#ids`:
no scan. Whether an address left a group is kept on the suppression list
(gomailpy.store.suppressions: per group). An email names its group by id (`unsubscribe.groupId`,
v3 `asm.group_id`); sending does not check that the group exists (an unknown id still works,
shown as "Group <id>" on the confirmation page), as SendGrid would refuse it: the API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gomailpy.store.items import ItemTable, Value

PREFIX = "asmgrp#"
IDS = PREFIX + "ids"
MAX_NAME = 100  # SendGrid's limits
MAX_DESCRIPTION = 250


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    name: str
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description}

    @property
    def label(self) -> str:
        return self.name or f"Group {self.id}"


def _group(group_id: int, item: dict[str, Value]) -> Group:
    return Group(group_id, str(item.get("name", "")), str(item.get("description", "")))


class GroupStore:
    """The unsubscribe groups on `table` (see the module docstring)."""

    def __init__(self, table: ItemTable) -> None:
        self._table = table

    async def add(self, group: Group) -> None:
        await self._table.put(
            f"{PREFIX}{group.id}", {"name": group.name, "description": group.description}
        )
        await self._table.add_member(IDS, str(group.id))

    async def get(self, group_id: int) -> Group | None:
        item = await self._table.get(f"{PREFIX}{group_id}")
        return None if item is None else _group(group_id, item)

    async def get_many(self, ids: list[int]) -> dict[int, Group]:
        found = await self._table.get_many([f"{PREFIX}{i}" for i in ids])
        return {i: _group(i, found[f"{PREFIX}{i}"]) for i in ids if f"{PREFIX}{i}" in found}

    async def list(self) -> list[Group]:
        ids = sorted(int(i) for i in await self._table.members(IDS) if i.isdigit())
        found = await self.get_many(ids)
        return [found[i] for i in ids if i in found]

    async def next_id(self) -> int:
        """The id a new group gets when none is asked for: one past the highest."""
        return max((g.id for g in await self.list()), default=0) + 1

    async def remove(self, group_id: int) -> bool:
        held = await self.get(group_id)
        await self._table.delete(f"{PREFIX}{group_id}")
        await self._table.remove_member(IDS, str(group_id))
        return held is not None

"""SendGrid v3's `asm` and `tracking_settings` read into `BulkOptions` (used by gomailpy.email.v3).

    asm: {"group_id": 3, "groups_to_display": [3, 4]}     -> unsubscribe link of group 3
    tracking_settings: {"click_tracking": {"enable": true, "enable_text": false},
                        "open_tracking": {"enable": true},
                        "subscription_tracking": {"enable": true}}   -> a global unsubscribe link

What gomailpy does not do is refused by name, as for the rest of v3: `ganalytics`,
`substitution_tag`, and subscription_tracking's own footer (`text`, `html`): gomailpy puts the
link in the List-Unsubscribe header, not in the body. `enable_text` is taken (plain-text links
are never rewritten). Unlike SendGrid, nothing is tracked unless asked.
"""

from __future__ import annotations

from typing import Any

from gomailpy.email.bulk.options import MAX_GROUPS_TO_DISPLAY, BulkOptions
from gomailpy.email.v3_fields import Problems, unknown_keys

_ASM = {"group_id", "groups_to_display"}
_TRACKING = {"click_tracking", "open_tracking", "subscription_tracking"}
_SWITCH = {"enable"}
_CLICK = {"enable", "enable_text"}


def _group_id(value: Any, where: str, problems: Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        problems.add("must be a positive integer (an unsubscribe group id)", where)
        return None
    return value


def _enabled(value: Any, known: set[str], where: str, problems: Problems) -> bool:
    if not isinstance(value, dict):
        problems.add("must be an object with enable", where)
        return False
    unknown_keys(value, known, where, problems)
    enable = value.get("enable", False)
    if not isinstance(enable, bool):
        problems.add("must be a boolean", f"{where}.enable")
        return False
    return enable


def read_bulk(data: dict[str, Any], problems: Problems) -> BulkOptions | None:
    """The options of a v3 request's `asm` and `tracking_settings` (None: neither given)."""
    asm, tracking = data.get("asm"), data.get("tracking_settings")
    if asm is None and tracking is None:
        return None
    options: dict[str, Any] = {}
    if asm is not None:
        if not isinstance(asm, dict) or "group_id" not in asm:
            problems.add("must be an object with a group_id", "asm")
        else:
            unknown_keys(asm, _ASM, "asm", problems)
            group = _group_id(asm["group_id"], "asm.group_id", problems)
            shown = asm.get("groups_to_display", [])
            if not isinstance(shown, list) or len(shown) > MAX_GROUPS_TO_DISPLAY:
                problems.add(
                    f"must be an array of at most {MAX_GROUPS_TO_DISPLAY} group ids",
                    "asm.groups_to_display",
                )
                shown = []
            ids = [
                _group_id(g, f"asm.groups_to_display.{n}", problems) for n, g in enumerate(shown)
            ]
            options.update(
                unsubscribe=True, group=group, groups_to_display=[i for i in ids if i is not None]
            )
    if tracking is not None:
        if not isinstance(tracking, dict):
            problems.add("must be an object", "tracking_settings")
        else:
            unknown_keys(tracking, _TRACKING, "tracking_settings", problems)
            where = "tracking_settings"
            if "click_tracking" in tracking:
                options["clicks"] = _enabled(
                    tracking["click_tracking"], _CLICK, f"{where}.click_tracking", problems
                )
            if "open_tracking" in tracking:
                options["opens"] = _enabled(
                    tracking["open_tracking"], _SWITCH, f"{where}.open_tracking", problems
                )
            subscription = tracking.get("subscription_tracking")
            if subscription is not None and _enabled(
                subscription, _SWITCH, f"{where}.subscription_tracking", problems
            ):
                options["unsubscribe"] = True
    return BulkOptions(**options)

"""The OpenAPI description of the operator's controls over the providers (api.views.controls), added
to the document by api.schema.openapi. Behind an API key like /email/ (api.auth.document_security
adds the key schemes, 401 and 429); without keys configured these routes answer 403."""

from __future__ import annotations

from typing import Any

from gomailpy.config.providers import NAME_PATTERN
from gomailpy.operating.controls import (
    ACTIONS,
    MAX_HISTORY_LIMIT,
    MAX_PROBE_AFTER_S,
    MAX_REASON,
    MAX_WEIGHT,
)

_ERRORS_REF = {"$ref": "#/components/schemas/Errors"}


def _errors(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERRORS_REF}}}


_CHANGED = {
    "type": "object",
    "description": "Who made the last change (`key <id>`), why, and when (epoch seconds)",
    "properties": {
        "by": {"type": "string"},
        "reason": {"type": "string"},
        "at": {"type": "number"},
    },
}
_PROVIDER_CONTROL = {
    "type": "object",
    "properties": {
        "disabled": {"type": "boolean"},
        "forced": {"type": ["string", "null"], "enum": ["open", "closed", None]},
        "weight": {"type": ["number", "null"], "description": "null: the configured weight"},
        "probe_after_s": {"type": ["number", "null"]},
        "released_at": {
            "type": ["number", "null"],
            "description": "When an operator last released its reputation hold (epoch seconds)",
        },
        "changed": _CHANGED,
        "active": {"type": "array", "items": {"type": "string"}, "description": "In words"},
    },
}
CONTROLS_SCHEMA = {
    "type": "object",
    "properties": {
        "providers": {
            "type": "object",
            "description": "Only the providers with a control ever set",
            "additionalProperties": _PROVIDER_CONTROL,
        },
        "pinned": {"type": ["string", "null"], "description": "Every email goes to this one"},
        "pin_changed": _CHANGED,
    },
    "required": ["providers", "pinned"],
}
CHANGE_SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_REASON,
            "description": "Required: recorded with the change and who made it",
        },
        "value": {
            "description": (
                f"weight: a number > 0 and <= {MAX_WEIGHT:g}, or null (the configured one);"
                " force: open, closed or auto; probe-after: seconds (0 to"
                f" {MAX_PROBE_AFTER_S:g}), or null; the other actions take none"
            ),
            "anyOf": [
                {"type": "number"},
                {"type": "string", "enum": ["open", "closed", "auto"]},
                {"type": "null"},
            ],
        },
    },
    "required": ["reason"],
}
_ANSWER = {
    "description": "The controls (after the change)",
    "content": {"application/json": {"schema": CONTROLS_SCHEMA}},
}
_NO_KEYS = _errors("API keys are not configured (api.api_key_hashes): the admin API is closed")
HISTORY_ENTRY_SCHEMA = {
    "type": "object",
    "description": "One change, as it was made; entries are never rewritten",
    "properties": {
        "seq": {"type": "integer", "description": "Its number: later changes, higher numbers"},
        "at": {"type": "number", "description": "When (epoch seconds)"},
        "by": {"type": "string", "description": "`key <id>` (API) or `<OS user> (cli)`"},
        "reason": {"type": "string"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "provider": {"type": ["string", "null"]},
        "value": {"type": ["string", "null"]},
        "before": {"type": "string", "description": "The state before, in words"},
        "after": {"type": "string", "description": "The state after, in words"},
    },
    "required": ["seq", "at", "by", "reason", "action", "before", "after"],
}
_HISTORY_PARAMETERS = [
    {
        "name": "provider",
        "in": "query",
        "required": False,
        "description": "Only the changes about this provider (its pin and unpin included)",
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT, "default": 50},
    },
]
_PATH_PARAMETERS = [
    {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The provider instance, `providers[].name` (any, for unpin)",
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    },
    {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(ACTIONS)},
    },
]
OPENAPI_PATHS: dict[str, Any] = {
    "/admin/providers": {
        "get": {
            "operationId": "listProviderControls",
            "summary": "The controls over the providers (disabled, forced, weights, the pin)",
            "responses": {"200": _ANSWER, "403": _NO_KEYS, "503": _errors("Status table down")},
        }
    },
    "/admin/providers/{name}/{action}": {
        "post": {
            "operationId": "changeProviderControl",
            "summary": "Disable, enable, weight, force, probe-after, release (a reputation hold),"
            " pin or unpin a provider",
            "parameters": _PATH_PARAMETERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CHANGE_SCHEMA}},
            },
            "responses": {
                "200": _ANSWER,
                "400": _errors(
                    'The body is not JSON of the form {"reason": "...", "value": ...}, the reason'
                    " is missing or too long, or the value does not fit the action"
                ),
                "403": _NO_KEYS,
                "404": _errors("No such provider or action"),
                "503": _errors("The status table cannot be written"),
            },
        }
    },
    "/admin/providers/history": {
        "get": {
            "operationId": "providerControlHistory",
            "summary": "Every change to the controls (who, why, when, before and after),"
            " newest first",
            "parameters": _HISTORY_PARAMETERS,
            "responses": {
                "200": {
                    "description": "The changes, newest first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "history": {"type": "array", "items": HISTORY_ENTRY_SCHEMA}
                                },
                                "required": ["history"],
                            }
                        }
                    },
                },
                "400": _errors("An unknown provider, or a limit out of range"),
                "403": _NO_KEYS,
                "503": _errors("Status table down"),
            },
        }
    },
}

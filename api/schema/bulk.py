"""The OpenAPI description of the links in bulk mail and the unsubscribe groups (api.views.bulk;
docs/bulk-sending.md); added to the document by api.schema.openapi."""

from __future__ import annotations

from typing import Any

from gomailpy.bulk.groups import MAX_DESCRIPTION, MAX_NAME

_ERRORS_REF = {"$ref": "#/components/schemas/Errors"}


def _gomail(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERRORS_REF}}}


_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    # base64url without padding (gomailpy.bulk.tokens): anything else is a malformed token, 400
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 4096},
    "description": "The signed token of the link: the authority, no API key",
}
_TOKEN_ANSWERS = {
    "400": _gomail("A malformed token"),
    "403": _gomail("A forged token"),
    "404": {"description": "Bulk sending is off (no secret or public URL)"},
    "410": _gomail("An expired token"),
}
_HTML = {"text/html": {"schema": {"type": "string"}}}
GROUP = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 2**32 - 1},
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    },
    "required": ["name"],
    "additionalProperties": False,
}
_GROUP_ANSWER = {"application/json": {"schema": {**GROUP, "required": ["id", "name"]}}}
OPENAPI_PATHS: dict[str, Any] = {
    "/u/{token}": {
        "get": {
            "operationId": "unsubscribePage",
            "summary": "The unsubscribe page (it never unsubscribes: scanners fetch every link)",
            "parameters": [_TOKEN],
            "responses": {"200": {"description": "The page", "content": _HTML}, **_TOKEN_ANSWERS},
        },
        "post": {
            "operationId": "unsubscribe",
            "summary": "Unsubscribe: List-Unsubscribe=One-Click (RFC 8058), or the page's form",
            "parameters": [_TOKEN],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"List-Unsubscribe": {"const": "One-Click"}},
                            "required": ["List-Unsubscribe"],
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "Unsubscribed (one-click: text; from the page: a page)"},
                **_TOKEN_ANSWERS,
                "501": _gomail("Nowhere to record it (no suppression list, no events queue)"),
            },
        },
    },
    "/t/o/{token}": {
        "get": {
            "operationId": "openPixel",
            "summary": "The open pixel (a 1x1 GIF): an `opened` event",
            "parameters": [_TOKEN],
            "responses": {
                "200": {"description": "The GIF", "content": {"image/gif": {}}},
                **_TOKEN_ANSWERS,
            },
        }
    },
    "/t/c/{token}": {
        "get": {
            "operationId": "trackedClick",
            "summary": "A tracked link: a `clicked` event, then to the URL the email had",
            "parameters": [_TOKEN],
            "responses": {"302": {"description": "To the link's URL"}, **_TOKEN_ANSWERS},
        }
    },
    "/asm/groups": {
        "get": {
            "operationId": "listGroups",
            "summary": "The unsubscribe groups (scope suppressions)",
            "responses": {
                "200": {
                    "description": "Every group",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"groups": {"type": "array", "items": GROUP}},
                                "required": ["groups"],
                            }
                        }
                    },
                },
                "401": _gomail("No valid API key"),
                "403": _gomail("The key lacks the suppressions scope"),
                "501": _gomail("Groups are off (status.backend is none)"),
            },
        },
        "post": {
            "operationId": "addGroup",
            "summary": "Add (or rename) an unsubscribe group; without an id, the next one",
            "requestBody": {"required": True, "content": {"application/json": {"schema": GROUP}}},
            "responses": {
                "201": {"description": "The group", "content": _GROUP_ANSWER},
                "400": _gomail("The body is not a JSON object, or is too large"),
                "401": _gomail("No valid API key"),
                "403": _gomail("The key lacks the suppressions scope"),
                "422": _gomail("An invalid field, or an unknown one"),
                "501": _gomail("Groups are off (status.backend is none)"),
            },
        },
    },
    "/asm/groups/{group}": {
        "delete": {
            "operationId": "removeGroup",
            "parameters": [
                {"name": "group", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "204": {"description": "Removed"},
                "401": _gomail("No valid API key"),
                "403": _gomail("The key lacks the suppressions scope"),
                "404": _gomail("No such group"),
                "501": _gomail("Groups are off (status.backend is none)"),
            },
        }
    },
}

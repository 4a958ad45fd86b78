"""The OpenAPI description of the other ways in: SendGrid's v3 mail send (api.views.sendgrid_v3),
the templates API (api.views.templates) and cancelling a scheduled send (api.views.schedules); added
to the document by api.schema.openapi."""

from __future__ import annotations

from typing import Any

from gomailpy.email.parts import TEMPLATE_ID
from gomailpy.email.schedule import MAX_AHEAD_S

_ADDRESS = {
    "type": "object",
    "properties": {"email": {"type": "string"}, "name": {"type": "string"}},
    "required": ["email"],
    "additionalProperties": False,
}
_ADDRESSES = {"type": "array", "items": _ADDRESS}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_SEND_AT_V3 = {"type": "integer", "description": "Epoch seconds, at most 72 hours ahead"}
V3_REQUEST = {
    "type": "object",
    "description": (
        "SendGrid's v3 mail send body. Each personalization is one email (message id"
        " `<X-Message-Id>_<n>`). Unknown fields, and asm, ip_pool_name, tracking_settings,"
        " sections and batch_id, are refused by name."
    ),
    "properties": {
        "personalizations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "properties": {
                    "to": _ADDRESSES,
                    "cc": _ADDRESSES,
                    "bcc": _ADDRESSES,
                    "from": _ADDRESS,
                    "subject": {"type": "string"},
                    "headers": _STRINGS,
                    "substitutions": _STRINGS,
                    "dynamic_template_data": {"type": "object"},
                    "custom_args": _STRINGS,
                    "send_at": _SEND_AT_V3,
                },
                "required": ["to"],
                "additionalProperties": False,
            },
        },
        "from": _ADDRESS,
        "reply_to": _ADDRESS,
        "reply_to_list": {**_ADDRESSES, "maxItems": 1},
        "subject": {"type": "string"},
        "content": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["text/plain", "text/html"]},
                    "value": {"type": "string"},
                },
                "required": ["type", "value"],
            },
        },
        "attachments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "description": "base64"},
                    "filename": {"type": "string"},
                    "type": {"type": "string"},
                    "disposition": {"type": "string", "enum": ["attachment", "inline"]},
                    "content_id": {"type": "string"},
                },
                "required": ["content", "filename"],
            },
        },
        "template_id": {"type": "string", "description": "A stored template (/templates/{id})"},
        "headers": _STRINGS,
        "categories": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "custom_args": _STRINGS,
        "send_at": _SEND_AT_V3,
        "mail_settings": {
            "type": "object",
            "properties": {
                "sandbox_mode": {"type": "object", "properties": {"enable": {"type": "boolean"}}}
            },
            "additionalProperties": False,
        },
    },
    "required": ["personalizations", "from"],
}
V3_ERRORS = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                    "help": {"type": ["string", "null"]},
                },
                "required": ["message"],
            },
        }
    },
    "required": ["errors"],
}
TEMPLATE = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "html": {"type": "string", "description": "{{x}} is HTML-escaped, {{{x}}} is not"},
        "text": {"type": "string"},
    },
    "additionalProperties": False,
}
SEND_AT = {
    "title": "Send at",
    "description": f"When to send: epoch seconds or ISO 8601 with a zone, at most {MAX_AHEAD_S} s"
    " ahead; cancel with DELETE /email/{messageId}/schedule",
    "anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
}

_ERRORS_REF = {"$ref": "#/components/schemas/Errors"}


def _v3(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": V3_ERRORS}}}


def _gomail(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERRORS_REF}}}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
# What gomailpy.email.templates accepts: a PUT of another id is 422, a GET or DELETE of one is 404.
_TEMPLATE_ID = {
    **_ID,
    "schema": {"type": "string", "pattern": TEMPLATE_ID.pattern},
    "description": "1 to 128 letters, digits, '_', '.', ':' or '-' (a letter or digit first)",
}
_TEMPLATE_ANSWER = {
    "description": "The template",
    "content": {"application/json": {"schema": {**TEMPLATE, "additionalProperties": True}}},
}
OPENAPI_PATHS: dict[str, Any] = {
    "/v3/mail/send": {
        "post": {
            "operationId": "v3MailSend",
            "summary": "Send as SendGrid's v3 API does (Authorization: Bearer <API key>)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": V3_REQUEST}},
            },
            "responses": {
                "202": {
                    "description": "Queued; empty body",
                    "headers": {"X-Message-Id": {"schema": {"type": "string"}}},
                },
                "200": {"description": "Sandbox mode: valid, nothing queued"},
                "400": _v3("Invalid request: each problem with its field"),
                "401": _v3("No valid API key"),
                "413": _v3("Request over 30 MB (or api.max_body_size_bytes)"),
                "429": _v3("Rate limited; see X-RateLimit-Limit/-Remaining/-Reset"),
                "503": _v3("No queue accepted the emails"),
            },
        }
    },
    "/templates": {
        "get": {
            "operationId": "listTemplates",
            "summary": "Every template id",
            "responses": {
                "200": {
                    "description": "Every template id",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "templates": {"type": "array", "items": {"type": "string"}}
                                },
                                "required": ["templates"],
                            }
                        }
                    },
                },
                "401": _gomail("No valid API key"),
                "501": _gomail("Templates are off (status.backend is none)"),
            },
        }
    },
    "/templates/{id}": {
        "put": {
            "operationId": "putTemplate",
            "summary": "Store a Handlebars template (every part must compile)",
            "parameters": [_TEMPLATE_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": TEMPLATE}},
            },
            "responses": {
                "200": _TEMPLATE_ANSWER,
                "400": _gomail("The body is not a JSON object, or is too large"),
                "401": _gomail("No valid API key"),
                "422": _gomail("A part does not compile, an unknown field, or an invalid id"),
                "501": _gomail("Templates are off"),
            },
        },
        "get": {
            "operationId": "getTemplate",
            "parameters": [_TEMPLATE_ID],
            "responses": {
                "200": _TEMPLATE_ANSWER,
                "401": _gomail("No valid API key"),
                "404": _gomail("No such template"),
                "501": _gomail("Templates are off"),
            },
        },
        "delete": {
            "operationId": "deleteTemplate",
            "parameters": [_TEMPLATE_ID],
            "responses": {
                "204": {"description": "Deleted"},
                "401": _gomail("No valid API key"),
                "404": _gomail("No such template"),
                "501": _gomail("Templates are off"),
            },
        },
    },
    "/email/{messageId}/schedule": {
        "delete": {
            "operationId": "cancelScheduledSend",
            "summary": "Cancel a scheduled email (or each part of a v3 X-Message-Id) before due",
            "parameters": [{**_ID, "name": "messageId"}],
            "responses": {
                "200": {"description": '{"messageId", "state": "cancelled", "cancelled": [ids]}'},
                "404": _gomail("No scheduled email with this id"),
                "409": _gomail("Already due or already tried"),
                "501": _gomail("Cancelling is off (status.backend is none)"),
            },
        }
    },
}

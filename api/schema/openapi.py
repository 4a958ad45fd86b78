"""The OpenAPI 3.1 document served at GET /openapi.json.

The request schema is generated from the model that validates requests (`EmailRequest`), so the
two cannot drift apart; the responses are written out here, one per status the API answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.schema.admin import OPENAPI_PATHS as ADMIN_PATHS
from api.schema.bulk import OPENAPI_PATHS as BULK_PATHS
from api.schema.protocols import OPENAPI_PATHS as PROTOCOL_PATHS
from api.schema.protocols import SEND_AT
from api.views.events import OPENAPI_PATHS as EVENTS_PATHS
from api.views.events_feed import OPENAPI_PATHS as FEED_PATHS
from api.views.overview import OPENAPI_PATHS as OVERVIEW_PATHS
from api.views.suppressions import EVENT_STATES, RECIPIENTS_SCHEMA
from api.views.suppressions import OPENAPI_PATHS as SUPPRESSION_PATHS
from gomailpy.email.models import FIELD_LABELS, EmailRequest

REF = "#/components/schemas/{model}"
RECIPIENT_LISTS = ("to", "cc", "bcc")


def _email_schemas() -> dict[str, Any]:
    schema = EmailRequest.model_json_schema(by_alias=True, ref_template=REF)
    schemas: dict[str, Any] = schema.pop("$defs", {})
    for name, prop in schema["properties"].items():
        if name in FIELD_LABELS:
            prop["title"] = FIELD_LABELS[name]
    # A recipient may also be a bare address string; the model coerces it before validating.
    for name in RECIPIENT_LISTS:
        items = schema["properties"][name]["items"]
        schema["properties"][name]["items"] = {"anyOf": [{"type": "string"}, items]}
    schema["description"] = (
        "gomail's email object, extended. fromEmail, toEmail and body (or html) are required."
    )
    schema["properties"]["sendAt"] = SEND_AT  # read before the model (gomailpy.email.schedule)
    schemas["EmailRequest"] = schema
    schemas["SendRequest"] = {
        "type": "object",
        "properties": {"email": {"$ref": REF.format(model="EmailRequest")}},
        "required": ["email"],
        "additionalProperties": False,
    }
    return schemas


ERRORS_SCHEMA = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "object",
            "description": "`base` for the request as a whole, else one message per field",
            "additionalProperties": {"type": "string"},
        }
    },
    "required": ["errors"],
}
READINESS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "reason": {"type": "string"},
        "queues": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "reachable": {"type": "boolean"},
                    "depth": {"type": ["integer", "null"]},
                    "problem": {"type": ["string", "null"]},
                },
            },
        },
    },
    "required": ["status", "queues"],
}


STATES = ["queued", "sending", "sent", "retrying", "failed"]
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "messageId": {"type": "string"},
        "state": {"type": "string", "enum": STATES},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "provider": {"type": ["string", "null"], "description": "Set once sent"},
        "providerMessageId": {"type": ["string", "null"], "description": "Set once sent"},
        "attempt": {"type": "integer", "description": "Deliveries from the queue so far"},
        "reason": {"type": ["string", "null"], "description": "Why the last try failed"},
        "timeline": {
            "type": "array",
            "description": "Every state the email went through, oldest first",
            "items": {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "enum": STATES + EVENT_STATES},
                    "at": {"type": "string", "format": "date-time"},
                    "recipient": {"type": "string", "description": "A provider's event"},
                    "attempt": {"type": "integer"},
                    "reason": {"type": "string"},
                    "provider": {"type": "string"},
                    "providerMessageId": {"type": "string"},
                },
                "required": ["state", "at"],
            },
        },
    },
    "required": ["messageId", "state", "createdAt", "updatedAt", "timeline"],
}
STATUS_SCHEMA["properties"]["recipients"] = RECIPIENTS_SCHEMA  # type: ignore[index]
IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes retries safe: the same key with the same body within the window"
        " (status.idempotency_window_s) answers the first request's messageId again and queues"
        " nothing new (the answer carries `Idempotent-Replayed: true`); the same key with a"
        " different body is refused with 422. Needs the status store (else 501)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": REF.format(model="Errors")})


def build_openapi(*, webclient_paths: Sequence[str] = ()) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/email/send": {
            "post": {
                "operationId": "sendEmail",
                "summary": "Validate an email and queue it for delivery",
                "parameters": [IDEMPOTENCY_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="SendRequest")}}
                    },
                },
                "responses": {
                    "200": _json(
                        "Queued: a queue accepted the email",
                        {
                            "type": "object",
                            "properties": {"messageId": {"type": "string"}},
                            "required": ["messageId"],
                        },
                    ),
                    "400": _errors(
                        'The body is too large, not JSON, or not of the form {"email": {...}},'
                        " or the Idempotency-Key is malformed, or a queue refused what the"
                        " email carries (errors.base says which)"
                    ),
                    "403": _errors(
                        "Sent by a browser (Origin header) for a page of an origin not in"
                        " api.cors_origins, nor the API's own"
                    ),
                    "415": _errors("Sent by a browser (Origin header), the body not declared JSON"),
                    "409": _errors(
                        "A request with the same Idempotency-Key is still being processed"
                    ),
                    "422": _errors(
                        "Invalid fields: one message per request field; or (errors.base) the"
                        " Idempotency-Key was already used with a different body"
                    ),
                    "501": _errors("Idempotency-Key sent, but the status store is off"),
                    "503": _errors(
                        "No queue accepted the email: errors.base is"
                        ' "Service unavailable"; nothing was queued. Retry-After: seconds to'
                        " wait (every queue known down: answered at once, no queue called)"
                    ),
                },
            },
            "options": {
                "operationId": "sendEmailPreflight",
                "summary": "CORS preflight (answered for the origins in api.cors_origins)",
                "parameters": [
                    {
                        "name": "Origin",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "Access-Control-Request-Method",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "204": {"description": "The origin is allowed"},
                    "403": _errors("The origin is not allowed"),
                    "405": _errors("Not a preflight (no Origin or Access-Control-Request-Method)"),
                },
            },
        },
        "/email/{messageId}": {
            "get": {
                "operationId": "emailStatus",
                "summary": "Delivery status of an email, with its timeline",
                "parameters": [
                    {
                        "name": "messageId",
                        "in": "path",
                        "required": True,
                        "description": "The messageId POST /email/send answered",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("The status record", {"$ref": REF.format(model="EmailStatus")}),
                    "404": _errors("No such email, or its record expired (status.ttl_s)"),
                    "501": _errors("Delivery status is off on this server (status.backend)"),
                    "503": _errors("The status store is unreachable"),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: 200 while the process runs",
                "responses": {"200": _json("Running", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness: can a queue accept an email (as of the last depth read)?",
                "responses": {
                    "200": _json("At least one queue is reachable", READINESS_SCHEMA),
                    "503": _json("No queue is reachable; `reason` says why", READINESS_SCHEMA),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1 document", {"type": "object"})},
            }
        },
    }
    paths.update(EVENTS_PATHS)
    paths.update(SUPPRESSION_PATHS)  # /suppressions
    paths.update(FEED_PATHS)  # GET /events
    paths.update(PROTOCOL_PATHS)  # v3 mail send, templates, scheduled sends
    paths.update(ADMIN_PATHS)  # /admin/providers
    paths.update(OVERVIEW_PATHS)  # /admin/overview
    paths.update(BULK_PATHS)  # /u/, /t/ (links in bulk mail), /asm/groups
    for number, path in enumerate(webclient_paths):
        paths[path] = {
            "get": {
                "operationId": f"webclient{number}",
                "summary": "The send form (webclient/)" if path == "/" else "A file of the form",
                "responses": {"200": {"description": "The file"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gomailpy API",
            "version": "1",
            "description": "Queues emails over SQS for delivery by the gomailpy pipeline.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                **_email_schemas(),
                "Errors": ERRORS_SCHEMA,
                "EmailStatus": STATUS_SCHEMA,
            }
        },
    }

"""Typed keys for what the API keeps on its `web.Application`.

Kept apart from the modules that fill them so that routes, middleware and the app factory can all
import them without importing each other.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.enqueue.gateway import QueueGateway
from gomailpy.config.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
# Set by the app's cleanup context once the queue client is open: absent before startup.
GATEWAY = web.AppKey("gateway", QueueGateway)
# The OpenAPI document, built once per app (it depends only on the settings).
OPENAPI = web.AppKey("openapi", dict[str, Any])

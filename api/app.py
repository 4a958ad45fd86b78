"""The API application: `create_app(settings)` builds it, `run_api(settings)` serves it.

Resources live in the app's cleanup context, so a test server and `gomail api` open and close them
the same way: one SQS client and one `QueueGateway` (with its depth refresher) for the app's life.
Nothing is fetched at startup, so the app starts (and answers 503) while the queue server is
unreachable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from api.auth import document_security, log_unscoped_keys
from api.enqueue.gateway import QueueGateway
from api.enqueue.queue_choice import make_chooser
from api.enqueue.regional_clients import open_regional_clients
from api.keys import GATEWAY, OPENAPI, SETTINGS
from api.middleware import (
    cors_middleware,
    cross_site_middleware,
    error_middleware,
    fast_lane_middleware,
    front_door_middleware,
    metrics_middleware,
)
from api.ratelimit import Clock
from api.routes import add_api_routes
from api.schema.openapi import build_openapi
from api.server import serve
from api.views.bulk import FAST_ROUTES
from api.views.delivery import delivery_resources
from api.webclient import add_webclient_routes, load_webclient
from gomailpy.config.settings import Settings
from gomailpy.errors import ConfigError
from gomailpy.operating import eventloop
from gomailpy.operating.loop_watch import watch_event_loop
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries.ids import id_key_problem

# Attempts per SQS call on the request path. Low on purpose: falling over to the next queue is
# the API's retry, and a client waiting on a dead queue server should get its 503 soon.
SEND_ATTEMPTS = 2


def check_api_settings(settings: Settings) -> None:
    """Raise ConfigError, naming the key, for settings the API must not start with (beyond what
    `load_settings` checks, which every component shares): a status store on a real endpoint
    without a secret message-id key (gomailpy.store.deliveries.ids.id_key_problem)."""
    problem = id_key_problem(settings)
    if problem is not None:
        raise ConfigError(problem)


def create_app(settings: Settings, *, clock: Clock = time.monotonic) -> web.Application:
    """The app for `settings`; `clock` drives the rate limits (tests pass one they step).
    ConfigError for settings an API must not run with (`check_api_settings`)."""
    check_api_settings(settings)
    app = web.Application(
        client_max_size=settings.api.max_body_size_bytes,
        middlewares=[
            fast_lane_middleware(FAST_ROUTES),
            cors_middleware(settings.api.cors_origins),
            metrics_middleware,
            cross_site_middleware(settings.api.cors_origins),
            error_middleware,
            front_door_middleware(settings.api, clock),
        ],
    )
    app[SETTINGS] = settings
    app.on_startup.append(_log_unscoped_keys)
    app.cleanup_ctx.append(_loop_watch)
    app.cleanup_ctx.append(_queue_gateway)
    app.cleanup_ctx.append(delivery_resources)  # status store and claim check, when configured
    add_api_routes(app)
    webclient = load_webclient() if settings.api.serve_webclient else {}
    add_webclient_routes(app, webclient)
    app[OPENAPI] = document_security(
        build_openapi(webclient_paths=list(webclient)),
        keys=bool(settings.api.keys),
        limited=settings.api.rate_limit_per_address > 0 or settings.api.rate_limit_per_key > 0,
    )
    return app


async def _log_unscoped_keys(app: web.Application) -> None:
    log_unscoped_keys(app[SETTINGS].api)


async def _loop_watch(app: web.Application) -> AsyncIterator[None]:
    # The event loop's lag and GC pauses (gomailpy.operating.loop_watch), for /metrics.
    async with watch_event_loop():
        yield


async def _queue_gateway(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with contextlib.AsyncExitStack() as stack:
        # The API's own client rather than QueueClient's default: no long-poll read timeout
        # (the API never receives) and few retries (see SEND_ATTEMPTS).
        # Parameters unchecked by botocore: the gateway builds every call itself (queue URL,
        # ids "0".."9", bodies it encoded), and the check was ~7 % of a call's CPU. Kept-alive
        # connections: this client never long-polls (see gomailpy.queues.aws._keep_alive).
        client = await open_aws_client(
            stack,
            "sqs",
            settings.aws,
            max_attempts=SEND_ATTEMPTS,
            validate_parameters=False,
            keep_alive=True,
        )
        queues = await stack.enter_async_context(create_queue_client(settings, client=client))
        chooser = make_chooser(settings.api.queue_choice)
        # Queues of other AWS regions (regional queues) need clients of their own.
        regional = await open_regional_clients(
            stack, settings, max_attempts=SEND_ATTEMPTS, validate_parameters=False, keep_alive=True
        )
        # Entered last, so closed first: a batch still lingering goes out before the client
        # closes (cleanup runs after the requests in flight finished).
        app[GATEWAY] = await stack.enter_async_context(
            QueueGateway(
                queues,
                settings.queues.urls,
                chooser,
                api=settings.api,
                regions=settings.regions,
                regional_clients=regional,
            )
        )
        yield


def run_api(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve the API until SIGTERM or SIGINT, then shut down gracefully (see `api.server`), on
    uvloop when available (gomailpy.operating.eventloop). `reuse_port`: see `api.workers`."""
    eventloop.run(serve(create_app(settings), settings.api, reuse_port=reuse_port))

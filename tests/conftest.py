"""The test bed: one real LocalStack (SQS, SES, S3, SNS) per test session, on a free loopback port,
and the fixtures that serve the API (or any aiohttp app) on loopback for one test.

LocalStack is installed on first use (gomailpy_local.localstack); scripts/setup.sh does it ahead
of time. moto's server stands in only where LocalStack cannot serve offline (DynamoDB).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gomailpy.config.settings import Settings
from gomailpy.operating.up_state import STATE_ENV
from gomailpy.queues.sqs import QueueClient, create_queue_client
from gomailpy_local.localstack import LocalStack
from tests.browser import browser  # noqa: F401  (the browser tests' fixture)
from tests.support import Client, StartClient, StartServer, create_queues, make_settings

# Emulators accept any credentials; real ones must never reach a test.
os.environ["AWS_ACCESS_KEY_ID"] = "test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for leaked in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(leaked, None)


@pytest.fixture(autouse=True)
def no_running_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A `make up` running beside the tests is never found (gomailpy.operating.up_state): the state
    file is looked for in this session's temp dir, where nothing writes it."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path_factory.getbasetemp() / "no-gomail-up.json"))


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    with LocalStack.start(progress=lambda line: print(line, flush=True)) as stack:
        yield stack


@pytest.fixture(scope="session")
def sqs_endpoint(localstack: LocalStack) -> str:
    """URL of the SQS (and SES, S3, SNS) server: LocalStack on loopback."""
    return localstack.endpoint_url


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server, for DynamoDB (LocalStack cannot serve it offline)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# -- serving apps for one test ------------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[AsyncExitStack]:
    """Everything `start_server` and `start_client` started, closed after the test."""
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """An exit stack for what the test opens (clients, nodes, servers), closed after it."""
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def start_server(served: AsyncExitStack) -> StartServer:
    """Serve an aiohttp app on 127.0.0.1 (a free port) until the test ends."""

    async def start(app: web.Application) -> TestServer:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        served.push_async_callback(server.close)
        return server

    return start


@pytest.fixture
def start_client(served: AsyncExitStack) -> StartClient:
    """Serve an aiohttp app as `start_server` does; return a client for it (`client.get("/")`)."""

    async def start(app: web.Application) -> Client:
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        return await served.enter_async_context(client)

    return start


@pytest.fixture
async def urls(settings: Settings) -> list[str]:
    """The queues of `settings` (this module's own fixture, where it has one), created."""
    return await create_queues(settings)


@pytest.fixture
async def queues(settings: Settings) -> AsyncIterator[QueueClient]:
    """A queue client for `settings`, closed after the test."""
    async with create_queue_client(settings) as client:
        yield client


@pytest.fixture
async def settings(sqs_endpoint: str) -> Settings:
    """Settings on the test bed with two fresh queues, created, and the web form served."""
    settings = make_settings(sqs_endpoint, api={"serve_webclient": True})
    await create_queues(settings)
    return settings

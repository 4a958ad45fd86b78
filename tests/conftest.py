"""The test bed: one real LocalStack (SQS, SES, S3) per test session, on a free loopback port.

LocalStack is installed on first use (gomailpy.localstack); scripts/setup.sh does it ahead of
time. moto's server stands in only where LocalStack cannot serve offline (DynamoDB).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from gomailpy.localstack import LocalStack

# Emulators accept any credentials; real ones must never reach a test.
os.environ["AWS_ACCESS_KEY_ID"] = "test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for leaked in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(leaked, None)


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    with LocalStack.start(progress=lambda line: print(line, flush=True)) as stack:
        yield stack


@pytest.fixture(scope="session")
def sqs_endpoint(localstack: LocalStack) -> str:
    """URL of the SQS (and SES, S3) server: LocalStack on loopback."""
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

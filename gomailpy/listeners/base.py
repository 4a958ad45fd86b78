"""The asyncio side that the production SMTP listeners, gomailpy.listeners.bounces (`gomail
bounces`) and gomailpy.listeners.submission (`gomail smtp`), share: the name they greet with, the
socket they serve on, how they close, and how they run until told to stop. aiosmtpd's protocol is
theirs to build, so this module needs no aiosmtpd.

    server, port = await listen(protocol, host, port)   # port 0: a free one
    await close_listener(server)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable

# How long closing waits for open sessions (a relay's idle one may linger) before it gives up.
CLOSE_TIMEOUT_S = 5.0


async def server_hostname() -> str:
    """This host's FQDN for the greeting, looked up once and off the loop (it may ask DNS):
    aiosmtpd would otherwise resolve it for every connection."""
    return await asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)


async def listen(
    protocol: Callable[[], asyncio.BaseProtocol], host: str, port: int
) -> tuple[asyncio.Server, int]:
    """Serve `protocol` on `host:port`; the server and the port it got (the real one for 0)."""
    server = await asyncio.get_running_loop().create_server(protocol, host, port)
    return server, server.sockets[0].getsockname()[1]


async def close_listener(server: asyncio.Server) -> None:
    """Stop accepting, then wait up to CLOSE_TIMEOUT_S for the open sessions to end (from
    Python 3.12 `wait_closed` waits for them too)."""
    server.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await server.wait_closed()


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT: a listener serves until it is set."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop

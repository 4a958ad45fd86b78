"""Running a long-lived process's main coroutine on the fastest event loop available.

    run(main())      # uvloop when it is installed and works here, else asyncio's own loop

uvloop (libuv) makes the socket work of aiohttp's server and client, which is most of what the
API and a pipeline node spend their CPU on besides validation, markedly cheaper
(bench/README.md). It is a runtime dependency, but not on every platform (no Windows wheels), so
its absence is not an error: the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("gomailpy")

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default loop) when uvloop is unavailable."""
    try:
        import uvloop
    except ImportError:
        log.debug("uvloop is not installed: running on asyncio's own event loop")
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    return "uvloop" if loop_factory() is not None else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)

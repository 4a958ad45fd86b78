"""gomailpy.operating.eventloop: uvloop when installed, asyncio's own loop when not, the same code
on both."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gomailpy.operating import eventloop


async def _loop_type() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_runs_on_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert eventloop.loop_name() == "uvloop"
    assert eventloop.run(_loop_type()).startswith("uvloop")


def test_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert eventloop.loop_factory() is None
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_loop_type()).startswith("asyncio")

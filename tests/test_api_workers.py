"""`gomail api --workers N`: several API processes on one port (api.workers).

Runs the real command as a subprocess with two workers on a port of its choosing, checks that
both workers listen on that one port and answer, and that SIGTERM stops the parent and every
worker with exit status 0. No queue server is needed: the API starts (and answers /healthz)
without one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from gomailpy_local.localstack import free_port

pytestmark = pytest.mark.slow


def workers_of(pid: int) -> list[int]:
    """The worker processes of a parent (multiprocessing's resource tracker left out)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [p for p in found if b"resource_tracker" not in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def listening_pids(port: int) -> set[int]:
    """Processes with a listening TCP socket on `port` (Linux /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreading and /proc: Linux")
async def test_two_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "api.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"host": "127.0.0.1", "port": port},
                "queues": {"urls": ["gomailpy-workers-test"]},
                "aws": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "client_timeout_s": 1},
                "logging": {"level": "WARNING"},
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gomailpy_cli.main", "api", "--config", str(config), "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        workers: list[int] = []
        for _ in range(1200):  # spawned interpreters take a while on a busy machine
            workers = workers_of(process.pid)
            if len(workers) == 2 and listening_pids(port) >= set(workers):
                break
            await asyncio.sleep(0.1)
        assert len(workers) == 2
        assert listening_pids(port) >= set(workers)  # both on the one port

        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 120) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat")
    return stat.read_text().rsplit(")", 1)[1].split()[0] if stat.exists() else "X"

"""Several API processes on one port: `gomail api --workers N`.

One API process is one Python interpreter: it uses at most one core, and on a busy node that
core is the limit (bench/README.md: ~0.5 ms of CPU per accepted email). The API keeps no state
between requests that another process would need (the queues, the status store and the
idempotency keys are shared services), so N processes can serve one port. Each binds it with
SO_REUSEPORT and the kernel spreads incoming connections over them; no process hands requests
to another.

The parent only starts the workers (spawned: fresh interpreters, no state copied from this one),
passes SIGTERM/SIGINT on, and waits. If a worker dies, the others are stopped and the exit
status is the dead worker's, so a supervisor (systemd, ECS, Kubernetes) restarts the whole set.

Per process, as with several API nodes: `/metrics` shows the worker that answered the scrape,
and rate limits (`api.rate_limit_*`) apply per worker: configure rate / N.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
from types import FrameType

from gomailpy.config.settings import Settings
from gomailpy.operating.logs import configure_logging

logger = logging.getLogger(__name__)


def run_workers(settings: Settings, workers: int) -> int:
    """Serve the API from `workers` processes; return the exit status (0: stopped cleanly)."""
    if workers <= 1:
        from api.app import run_api

        run_api(settings)
        return 0
    if not hasattr(socket, "SO_REUSEPORT"):
        logger.error("--workers needs SO_REUSEPORT, which this platform lacks")
        return 2
    # Port 0 means "any free port": every worker must get the same one, so it is chosen here
    # by a socket that joins the SO_REUSEPORT group without listening (it takes no connections)
    # and stays bound until the workers are gone.
    holder = socket.socket(socket.AF_INET6 if ":" in settings.api.host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((settings.api.host, settings.api.port))
    port = holder.getsockname()[1]
    shared = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_worker, args=(shared,), name=f"gomail-api-{n + 1}", daemon=False)
        for n in range(workers)
    ]
    for child in children:
        child.start()

    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                child.terminate()  # SIGTERM: each worker finishes its requests in flight

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        running = list(children)
        while running:
            multiprocessing.connection.wait([child.sentinel for child in running])
            for child in [c for c in running if not c.is_alive()]:
                running.remove(child)
                child.join()
                # A worker stopped by our own SIGTERM before it could take it gracefully is
                # not a failure.
                asked = stopping and child.exitcode == -signal.SIGTERM
                if child.exitcode and not asked and not status:
                    status = child.exitcode if child.exitcode > 0 else 1
                    logger.error("API worker %s exited with %s", child.name, child.exitcode)
                    stop(signal.SIGTERM, None)  # all or none: let the supervisor restart
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
    return status


def _worker(settings: Settings) -> None:
    from api.app import run_api

    configure_logging(settings.logging)
    try:
        run_api(settings, reuse_port=True)
    except KeyboardInterrupt:
        sys.exit(0)

"""Serving the send form (webclient/) at GET / when api.serve_webclient is on, and the operator
page (webclient/operator/, api.views.overview) at GET /operator.

Each file gets a route of its own, listed once at startup, rather than a static catch-all: an
unknown path stays a plain JSON 404, a wrong method on an API path a 405, and metrics get one
label per file.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

logger = logging.getLogger(__name__)

FileHandler = Callable[[web.Request], Awaitable[web.FileResponse]]


def find_webclient() -> Path | None:
    """The form's directory: the repository's webclient/ in a checkout, else the copy the wheel
    installs as gomailpy/_webclient."""
    candidates = [Path(__file__).resolve().parent.parent / "webclient"]
    installed = importlib.resources.files("gomailpy") / "_webclient"
    if isinstance(installed, Path):
        candidates.append(installed)
    return next((path for path in candidates if (path / "index.html").is_file()), None)


def webclient_files(directory: Path) -> dict[str, Path]:
    """URL path -> file: "/" is index.html, every other file is served under its own name, and
    a folder's index.html under the folder's name too."""
    files = {"/": directory / "index.html"}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files["/" + relative.as_posix()] = path
            if relative.name == "index.html" and len(relative.parts) > 1:
                files["/" + relative.parent.as_posix()] = path  # /operator: operator/index.html
    return files


def _serve(path: Path) -> FileHandler:
    async def serve_file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    return serve_file


def add_webclient_routes(app: web.Application, files: dict[str, Path]) -> None:
    for url_path, path in files.items():
        app.router.add_get(url_path, _serve(path))


def load_webclient() -> dict[str, Path]:
    """The form's files, or none (with a warning) when the directory cannot be found."""
    directory = find_webclient()
    if directory is None:
        logger.warning("api.serve_webclient is on but the webclient directory was not found")
        return {}
    return webclient_files(directory)

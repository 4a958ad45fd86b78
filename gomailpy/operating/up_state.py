"""Where a running `gomail up` can be found, so the operator commands find it with no flags.

`gomail up` writes a small JSON file once everything is up and removes it on exit:

    {"pid": 4242, "endpoint_url": "http://127.0.0.1:4566", "queues": ["gomailpy-1", ...],
     "api_url": "http://127.0.0.1:8000", "admin_urls": ["http://127.0.0.1:40123", ...],
     "status_endpoint_url": "http://127.0.0.1:40555"}

at `$GOMAILPY_UP_STATE` if set, else `$XDG_RUNTIME_DIR/gomailpy/up.json`, else
`~/.cache/gomailpy/up.json`. A file whose process is gone (a `gomail up` killed with SIGKILL)
is ignored. `gomail status`, `gomail dlq …` and `gomail send` read it (gomailpy_cli.main): with no
explicit configuration they use the stack's endpoint and queues; with a --config (or GOMAILPY_*
variables) naming the same endpoint they take its node admin URLs and status endpoint, which
`gomail up` chose at random. Explicit configuration always wins: a --config or any GOMAILPY_*
setting that does not name the stack's endpoint means the stack is not looked at, and a value
configured is never replaced by the stack's. Only the CLI reads the environment; these
functions are handed it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gomailpy.config.settings import ENV_PREFIX, Settings

STATE_ENV = "GOMAILPY_UP_STATE"
# GOMAILPY_* variables that are not settings: where to find the stack, `gomail send`'s API key.
NOT_SETTINGS = frozenset({STATE_ENV, "GOMAILPY_API_KEY"})


@dataclass(frozen=True, slots=True)
class UpState:
    """The running local stack: who runs it and where each part answers."""

    pid: int
    endpoint_url: str | None
    queues: list[str]
    api_url: str
    admin_urls: list[str]
    status_endpoint_url: str | None = None


def state_path(env: Mapping[str, str]) -> Path:
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "gomailpy" / "up.json"
    return Path(env.get("HOME") or Path.home()) / ".cache" / "gomailpy" / "up.json"


def write_state(path: Path, state: UpState) -> None:
    """Write atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{state.pid}")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n")
    partial.replace(path)


def read_state(path: Path) -> UpState | None:
    """The state of a `gomail up` still running, or None (no file, unreadable, or stale)."""
    try:
        raw: Any = json.loads(path.read_text())
        state = UpState(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def remove_state(path: Path, pid: int) -> None:
    """Remove the file if it is `pid`'s: another `gomail up` may have written its own since."""
    current = read_state(path)
    if current is None or current.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _same_endpoint(a: str | None, b: str | None) -> bool:
    def plain(url: str | None) -> str:
        return (url or "").rstrip("/").replace("//localhost", "//127.0.0.1")

    return plain(a) == plain(b)


def explicit_configuration(env: Mapping[str, str], config_path: Path | None) -> str | None:
    """What configures gomailpy explicitly, for messages ("--config FILE", "GOMAILPY_A, ..."),
    or None: no --config and no GOMAILPY_* setting in `env`."""
    if config_path is not None:
        return f"--config {config_path}"
    names = sorted(
        name
        for name in env
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in NOT_SETTINGS
    )
    return ", ".join(names) or None


def applies_to(state: UpState, settings: Settings, *, config_given: bool) -> bool:
    """Whether the commands should look at this stack: no configuration given, or one naming
    its endpoint (`make up`'s own config/gomailpy.yaml does)."""
    return not config_given or _same_endpoint(settings.aws.endpoint_url, state.endpoint_url)


def settings_for(state: UpState, settings: Settings, *, config_given: bool) -> Settings:
    """`settings` pointed at the running stack: its endpoint, queues and status store when no
    config was given; its status endpoint when the config leaves that to `gomail up`."""
    data = settings.model_dump(mode="python")
    if not config_given:
        data["aws"]["endpoint_url"] = state.endpoint_url
        data["queues"]["urls"] = list(state.queues)
    status = settings.status
    if state.status_endpoint_url and not config_given:
        data["status"].update(backend="dynamodb", endpoint_url=state.status_endpoint_url)
    elif state.status_endpoint_url and status.backend == "dynamodb" and not status.endpoint_url:
        data["status"]["endpoint_url"] = state.status_endpoint_url
    return Settings.model_validate(data)

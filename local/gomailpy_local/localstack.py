"""LocalStack on loopback, without Docker: installed once, started per test session or `gomail up`.

LocalStack 2026.3 needs Python >= 3.13 (the project runs on 3.11), so it lives in a venv of its
own under `~/.cache/gomailpy/` built from the Python 3.13 that pyenv provides. Installing takes
about 75 s once; a stamp file makes later runs free.

    python -m gomailpy_local.localstack install      # what scripts/setup.sh runs
    python -m gomailpy_local.localstack run --port 4566

    with LocalStack.start() as stack:                # a free port, a private data dir
        stack.endpoint_url                           # http://127.0.0.1:PORT
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gomailpy.errors import GomailError

VERSION = "2026.3.0"
# sns: SES publishes its configuration-set events to an SNS topic, which feeds the events queue.
SERVICES = "sqs,ses,s3,sns"
# Pins found by trial on these machines: newer releases of these break localstack-core 2026.3
# (cbor2 6 lacks cbor2._decoder, pyOpenSSL 26 lacks X509.add_extensions), and they must be
# installed in one pip command so pip resolves them together.
COMPANION_PINS = ["service_identity", "cryptography<47", "pyopenssl<26", "cbor2<6"]
START_TIMEOUT_S = 60.0

Progress = Callable[[str], None]


class LocalStackError(GomailError):
    """LocalStack could not be installed or started; the message says what to do."""


def install_dir() -> Path:
    override = os.environ.get("GOMAILPY_LOCALSTACK_HOME")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gomailpy" / f"localstack-{VERSION}"


def venv_python() -> Path:
    return install_dir() / "bin" / "python"


def find_python313() -> str:
    """A Python >= 3.13 interpreter: $GOMAILPY_PYTHON313, pyenv's 3.13.x, or python3.13 on PATH."""
    candidates: list[str] = []
    if os.environ.get("GOMAILPY_PYTHON313"):
        candidates.append(os.environ["GOMAILPY_PYTHON313"])
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = Path(pyenv_root) / "versions"
    if versions.is_dir():
        candidates += [
            str(v / "bin" / "python")
            for v in sorted(versions.iterdir(), reverse=True)
            if v.name.startswith("3.13")
        ]
    for name in ("python3.13", "python3.14"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for candidate in candidates:
        if Path(candidate).exists():
            return candidate
    raise LocalStackError(
        "LocalStack needs Python 3.13 or newer and none was found: install one"
        " (e.g. `pyenv install 3.13.0`) or set GOMAILPY_PYTHON313 to its interpreter"
    )


def is_installed() -> bool:
    stamp = install_dir() / ".gomailpy-installed"
    return stamp.exists() and stamp.read_text().strip() == VERSION and venv_python().exists()


def ensure_installed(progress: Progress = print) -> Path:
    """Install LocalStack into its own venv unless already there; return that venv's python."""
    if is_installed():
        return venv_python()
    home = install_dir()
    python = find_python313()
    progress(f"installing LocalStack {VERSION} into {home} (once, about 75 s)...")
    steps = [
        [python, "-m", "venv", "--clear", str(home)],
        [str(venv_python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [
            str(venv_python()),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"localstack-core[runtime]=={VERSION}",
        ],
        [str(venv_python()), "-m", "pip", "install", "--quiet", *COMPANION_PINS],
    ]
    for number, step in enumerate(steps, 1):
        progress(f"  [{number}/{len(steps)}] {' '.join(step[-2:])}")
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise LocalStackError(f"installing LocalStack failed at: {' '.join(step)}\n{tail}")
    (home / ".gomailpy-installed").write_text(VERSION + "\n")
    progress("LocalStack installed.")
    return venv_python()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def health(endpoint_url: str, timeout_s: float = 1.0) -> dict[str, str] | None:
    """The services' states from /_localstack/health, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/_localstack/health", timeout=timeout_s) as r:
            return dict(json.load(r).get("services", {}))
    except (OSError, ValueError, urllib.error.URLError):
        return None


@dataclass
class LocalStack:
    """One running LocalStack process on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    _own_dir: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, port: int = 0, *, data_dir: Path | None = None, progress: Progress = print
    ) -> Iterator[LocalStack]:
        stack = cls.launch(port, data_dir=data_dir, progress=progress)
        try:
            yield stack
        finally:
            stack.stop()

    @classmethod
    def launch(
        cls, port: int = 0, *, data_dir: Path | None = None, progress: Progress = print
    ) -> LocalStack:
        python = ensure_installed(progress)
        port = port or free_port()
        own_dir = data_dir is None
        data_dir = Path(tempfile.mkdtemp(prefix="gomailpy-localstack-")) if own_dir else data_dir
        assert data_dir is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            "GATEWAY_LISTEN": address,
            # The default server binds 0.0.0.0 whatever host it is given; hypercorn keeps to it.
            "GATEWAY_SERVER": "hypercorn",
            "SERVICES": SERVICES,
            "EAGER_SERVICE_LOADING": "1",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LOCALSTACK_HOST": address,
            "SQS_ENDPOINT_STRATEGY": "path",
            "OVERRIDE_IN_DOCKER": "0",
            "DNS_ADDRESS": "0",
            "FILESYSTEM_ROOT": str(data_dir / "fs"),
            "XDG_CACHE_HOME": str(data_dir / "cache"),
        }
        log_path = data_dir / "localstack.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on
            )
        stack = cls(port, process, data_dir, log_path, own_dir)
        try:
            stack.wait_ready()
        except BaseException:
            stack.stop()
            raise
        return stack

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        wanted = set(SERVICES.split(","))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with code {self.process.returncode} while starting;"
                    f" its log:\n{self.log_tail()}"
                )
            services = health(self.endpoint_url)
            if services and all(services.get(s) in ("available", "running") for s in wanted):
                return
            time.sleep(0.2)
        raise LocalStackError(
            f"LocalStack did not become ready within {timeout_s:.0f} s; log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 3.0) -> None:
        # Its state is thrown away with its data dir, so a slow shutdown (seen: over 10 s after
        # S3 and SES were used) is cut short rather than waited for.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "install"
    try:
        if command == "install":
            ensure_installed()
            print(f"LocalStack {VERSION}: {venv_python()}")
            return 0
        if command == "run":
            port = int(args[args.index("--port") + 1]) if "--port" in args else 4566
            with LocalStack.start(port) as stack:
                print(f"LocalStack ready at {stack.endpoint_url} (Ctrl-C stops it)", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    stack.process.wait()
            return 0
    except LocalStackError as exc:
        print(f"gomailpy: {exc}", file=sys.stderr)
        return 1
    print("usage: python -m gomailpy_local.localstack [install | run [--port N]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The house (STYLE §11) as tests: the import contracts hold (pyproject's [tool.importlinter],
run by `lint-imports`: layers, the library importing no application, no import cycle at any
level), and no package has grown into a flat pile of more than a dozen modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ["gomailpy", "api", "pipeline", "gomailpy_cli", "local/gomailpy_local"]
MAX_MODULES = 12  # modules directly in one package, its __init__ aside


def packages() -> list[Path]:
    return sorted(init.parent for top in TOP_LEVEL for init in (ROOT / top).rglob("__init__.py"))


def modules_directly_in(package: Path) -> list[str]:
    return sorted(path.stem for path in package.glob("*.py") if path.name != "__init__.py")


@pytest.mark.parametrize("package", packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_holds_more_than_a_dozen_modules(package: Path) -> None:
    modules = modules_directly_in(package)
    assert len(modules) <= MAX_MODULES, (
        f"{package.relative_to(ROOT)} has {len(modules)} modules directly in it, at most"
        f" {MAX_MODULES}: split it by concept before adding the next ({', '.join(modules)})"
    )


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

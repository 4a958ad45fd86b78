#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run linters and the whole test suite. Exit non-zero on any failure,
# including "no tests collected" (pytest's exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> docs"
# The documentation site (mkdocs.yml, docs/hooks.py), offline, every warning an error.
docs_site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$docs_site"
rm -rf "$docs_site"
echo "==> import contracts"
.venv/bin/lint-imports --no-logo
echo "==> pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"

#!/usr/bin/env bash
# Set up everything gomailpy needs on a fresh machine; safe to run again (reuses what is there).
#   .venv (Python 3.11) with the project, its dev tools and its local stack (local/: `gomail up`,
#   the stand-ins, the LocalStack launcher), Debian's chromium for the browser tests, Debian's
#   prometheus for promtool (the alert rules' tests), and
#   LocalStack in its own Python 3.13 venv under ~/.cache/gomailpy/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.gomailpy-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ local/pyproject.toml -nt "$stamp" ]
then
  echo "==> installing gomailpy, its dev tools and its local stack into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,smtp]' -e ./local
  touch "$stamp"
fi

if [ "${GOMAILPY_SKIP_BROWSER:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium (browser tests of the web form)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x /usr/bin/promtool ]; then
  # promtool checks and unit-tests the alert rules (config/prometheus/, tests/test_dashboards.py).
  # Debian ships it in the prometheus package; the server it also installs is never started here.
  echo "==> installing Debian's prometheus (promtool, for the alert rules' tests)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null
fi

echo "==> LocalStack"
.venv/bin/python -m gomailpy_local.localstack install

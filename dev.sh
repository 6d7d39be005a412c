#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh serve [appliance serve flags]   set up .venv and run the appliance (embedded default)
#   ./dev.sh test  [pytest args]             set up .venv with test extras and run the whole suite
#   ./dev.sh check                           ruff and mypy (CI runs them after the tests)
# Set-up is idempotent: it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VENV:-.venv}
EXTRAS_SERVE="cpu,openvino,litert"
EXTRAS_TEST="cpu,openvino,litert,otel,test"

setup() {  # $1 = extras
  local extras=$1 stamp="$VENV/.setup-stamp"
  local want
  want="$extras $(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then return 0; fi
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "error: Python 3.11+ is required (found $("$PYTHON" --version))" >&2; exit 1; }
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -c constraints.txt -e ".[$extras]"
  # Demo and test models that ship inside PyPI packages; --no-deps keeps their pins
  # (magika would pull onnxruntime, mediapipe a whole stack) out of our environment.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      -c constraints.txt magika mediapipe
  echo "$want" > "$stamp"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    setup "$EXTRAS_SERVE"
    exec "$VENV/bin/appliance" serve "$@" ;;
  test)
    setup "$EXTRAS_TEST"
    exec "$VENV/bin/python" -m pytest "$@" ;;
  check)
    setup "$EXTRAS_TEST"
    "$VENV/bin/python" -m ruff check . && exec "$VENV/bin/python" -m mypy ;;
  setup)
    setup "${1:-$EXTRAS_TEST}" ;;
  *)
    echo "usage: ./dev.sh serve [flags] | ./dev.sh test [pytest args] | ./dev.sh check | ./dev.sh setup" >&2
    exit 2 ;;
esac

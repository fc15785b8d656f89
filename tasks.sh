#!/usr/bin/env bash
# The two entry points of the README:  ./tasks.sh demo   and   ./tasks.sh test
# Each creates (or reuses) ./.venv, installs the project with the tested pins, then runs.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"

setup() {
  if [ -z "$PY" ]; then
    echo "Python 3.11 not found. On Debian 12: apt-get install -y python3 python3-venv" >&2; exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || { echo "venv failed. On Debian 12: apt-get install -y python3-venv" >&2; exit 1; }
  fi
  # Reinstall only when the declared dependencies change.
  local want; want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  if [ "$(cat "$VENV/.installed" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[train,litert,onnx,bench,scale,mqtt,dev]"
    echo "$want" > "$VENV/.installed"
  fi
}

case "${1:-}" in
  demo) setup; shift; exec "$VENV/bin/python" -m export demo "$@" ;;
  test) setup; shift; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  *) echo "usage: ./tasks.sh demo|test [args...]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# One-command set-up for a fresh machine: a local virtualenv with everything, then
#   run   start the pipeline on embedded defaults (local broker, embedded ClickHouse, local archive)
#   test  run the whole test suite against real local servers
set -euo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-run}"; shift || true
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing evpipe and its dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,bench]"

case "$mode" in
  run)
    # Broker, topics, gateway, archiver and loader (reused when running), then the sample workload.
    .venv/bin/evpipe dev up "$@"
    exec .venv/bin/evpipe dev demo
    ;;
  test)
    # The integration suite talks to a real S3 server: Ceph RGW from Debian's packages.
    bash infra/local/install-ceph.sh
    # The alert rules are checked and unit-tested by Prometheus's own promtool (tests/infra).
    bash infra/local/install-promtool.sh
    echo "==> checking the import layers (pyproject.toml [tool.importlinter])"
    .venv/bin/lint-imports
    exec .venv/bin/python -m pytest -n 2 "$@"
    ;;
  *)
    echo "usage: $0 run|test [args...]" >&2
    exit 2
    ;;
esac

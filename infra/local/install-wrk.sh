#!/usr/bin/env bash
# Install wrk (Debian's package) when missing: the HTTP load generator of `python -m bench gateway`.
# Idempotent.
set -euo pipefail
if command -v wrk >/dev/null; then
  exit 0
fi
bash "$(dirname "$0")/install-debian.sh" wrk "the gateway benchmark's HTTP load generator" wrk
echo "==> $(wrk --version 2>&1 | head -1)"

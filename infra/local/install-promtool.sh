#!/usr/bin/env bash
# Install promtool (Debian's prometheus package) when missing: the test suite checks the alert rules
# with it and runs their unit tests (promtool test rules). Idempotent.
set -euo pipefail
here="$(dirname "$0")"
if command -v promtool >/dev/null; then
  exit 0
fi
bash "$here/install-debian.sh" promtool "checks and unit-tests the Prometheus alert rules" prometheus
# The package also brings a Prometheus server and enables it; only its promtool is wanted here.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "==> $(promtool --version 2>&1 | head -1)"

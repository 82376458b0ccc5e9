#!/usr/bin/env bash
# Install a Debian package when the program it provides is missing, the way install-ceph.sh installs
# Ceph: nothing to do when the program is on PATH, else apt-get (through sudo when not root), else a
# clear error naming what to install. Idempotent.
#   usage: install-debian.sh PROGRAM "WHAT IT IS FOR" PACKAGE [PACKAGE...]
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 PROGRAM \"what it is for\" PACKAGE [PACKAGE...]" >&2
  exit 2
fi
program="$1"; purpose="$2"; shift 2
packages=("$@")
if command -v "$program" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "error: $program ($purpose) is not installed and this user cannot install packages;" \
       "install the Debian package(s) ${packages[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "error: $program ($purpose) is not installed and this is not a Debian/Ubuntu machine (no apt-get);" \
       "install $program with your package manager" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "==> installing $program ($purpose) from Debian packages: ${packages[*]}"
$SUDO apt-get update -qq
# No recommends: only the program, not the services a package suggests next to it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if ! command -v "$program" >/dev/null; then
  echo "error: installed ${packages[*]} but $program is still not on PATH" >&2
  exit 1
fi

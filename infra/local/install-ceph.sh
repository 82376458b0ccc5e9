#!/usr/bin/env bash
# Install Ceph (mon, osd, radosgw) from Debian's packages when missing: the local S3 server.
set -euo pipefail
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "error: Ceph is not installed and this user cannot install packages;" \
       "install ceph-mon ceph-osd radosgw ceph-common, or set S3_ENDPOINT_URL to an S3 server" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "==> installing Ceph RGW (local S3 server) from Debian packages"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ceph-mon ceph-osd radosgw ceph-common >/dev/null

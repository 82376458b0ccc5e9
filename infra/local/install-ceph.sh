#!/usr/bin/env bash
# Install Ceph (mon, osd, radosgw) from Debian's packages when missing: the local S3 server
# that `evpipe dev up --s3` and the test suite run (evpipe/local/ceph.py). Idempotent.
set -euo pipefail
BINARIES=(ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph)
missing() {
  local name
  for name in "${BINARIES[@]}"; do command -v "$name" >/dev/null || return 0; done
  return 1
}
if ! missing; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "error: Ceph is not installed and this user cannot install packages;" \
       "install ceph-mon ceph-osd radosgw ceph-common, or set S3_ENDPOINT_URL to an S3 server" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "error: Ceph is not installed and this is not a Debian/Ubuntu machine (no apt-get);" \
       "install ceph-mon ceph-osd radosgw ceph-common with your package manager, or set S3_ENDPOINT_URL" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "==> installing Ceph RGW (local S3 server) from Debian packages"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  ceph-mon ceph-osd radosgw ceph-common >/dev/null
if missing; then
  echo "error: installed ceph-mon ceph-osd radosgw ceph-common but a Ceph program is still missing" \
       "(need: ${BINARIES[*]})" >&2
  exit 1
fi
echo "==> $(ceph --version)"

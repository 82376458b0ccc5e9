"""The files a single-node Ceph cluster needs: ceph.conf, one keyring, the S3 credentials.

Everything lives under one directory (``<state>/ceph``), so two clusters with
different state dirs never share a path, a socket or a port. Nothing here
starts a process; see :mod:`evpipe.local.ceph` for that.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# The S3 user of the local server. Fixed development credentials (documented in
# docs/deployment.md): the server listens on loopback only and holds throwaway data.
S3_USER = "evpipe"
DEV_ACCESS_KEY = "EVPIPELOCALDEVKEY001"
DEV_SECRET_KEY = "evpipe-local-dev-secret-key-not-for-production"

RGW_NAME = "client.rgw.evpipe"
MON_ID = "a"
OSD_ID = 0
BLOCK_SIZE = 8 << 30  # sparse: only written blocks use disk


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class CephPaths:
    """Every path of one cluster, all under ``root``."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def keyring(self) -> Path:
        return self.root / "keyring"

    @property
    def monmap(self) -> Path:
        return self.root / "monmap"

    @property
    def mon_data(self) -> Path:
        return self.root / "mon" / f"ceph-{MON_ID}"

    @property
    def osd_data(self) -> Path:
        return self.root / "osd" / f"ceph-{OSD_ID}"

    @property
    def osd_block(self) -> Path:
        # Outside the OSD data dir on purpose: bluestore's mkfs treats that dir as its own.
        return self.root / "osd-block.img"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        # Shared with the Daemon stdout logs (mon.log, osd.log, rgw-PORT.log); Ceph's own are ceph-*.log.
        return self.root / "logs"

    @property
    def credentials(self) -> Path:
        return self.root / "s3-credentials.json"

    @property
    def ready_marker(self) -> Path:
        """Written last by the bootstrap: its absence means a half-made cluster to redo."""
        return self.root / "bootstrapped"

    def rgw_log(self, port: int) -> Path:
        return self.log_dir / f"ceph-rgw-{port}.log"

    def rgw_socket(self, port: int) -> Path:
        return self.run_dir / f"rgw-{port}.asok"


def cephx_key() -> str:
    """A new cephx secret in Ceph's encoding: type, creation time, length, 16 random bytes."""
    now = time.time()
    header = struct.pack("<HIIH", 1, int(now), int((now % 1) * 1e9), 16)
    return base64.b64encode(header + os.urandom(16)).decode()


def render_conf(paths: CephPaths, fsid: str, mon_port: int) -> str:
    root = paths.root
    return f"""# Single-node development cluster written by evpipe (evpipe/local/ceph.py). Loopback only.
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
mon initial members = {MON_ID}
public addr = 127.0.0.1
# msgr2 only: no extra v1 ports to collide with another cluster.
ms bind msgr1 = false
# Without this radosgw waits 300 s on its first mon session.
ms mon client mode = crc secure
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {paths.keyring}
run dir = {paths.run_dir}
crash dir = {root / 'crash'}
# One OSD: no replication.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000

[mon]
mon data = {paths.mon_data}
log file = {paths.log_dir}/ceph-mon.log
mon cluster log file = {paths.log_dir}/ceph-cluster.log
mon allow pool delete = true

[osd]
osd data = {paths.osd_data}
osd objectstore = bluestore
bluestore block path = {paths.osd_block}
bluestore block create = true
bluestore block size = {BLOCK_SIZE}
log file = {paths.log_dir}/ceph-osd.log
# A development OSD: keep memory and threads small.
osd memory target = 1073741824
osd op num shards = 2
osd op num threads per shard = 1

# Port, log file and admin socket are given per process on the command line, so
# one cluster can serve several gateways (fault tests take one down alone).
[{RGW_NAME}]
rgw data = {root / 'rgw'}
rgw thread pool size = 64
"""


def render_keyring(keys: dict[str, str]) -> str:
    """One keyring for every entity of the cluster (a development cluster has one trust domain)."""
    caps = {
        "mon.": {"mon": "allow *"},
        "client.admin": {"mon": "allow *", "osd": "allow *", "mgr": "allow *", "mds": "allow *"},
        f"osd.{OSD_ID}": {"mon": "allow profile osd", "osd": "allow *", "mgr": "allow profile osd"},
        RGW_NAME: {"mon": "allow rw", "osd": "allow rwx", "mgr": "allow rw"},
    }
    sections = []
    for entity, entity_caps in caps.items():
        lines = [f"[{entity}]", f"\tkey = {keys[entity]}"]
        lines += [f'\tcaps {service} = "{cap}"' for service, cap in entity_caps.items()]
        sections.append("\n".join(lines))
    return "\n".join(sections) + "\n"


def write_cluster_files(paths: CephPaths, mon_port: int) -> str:
    """Write ceph.conf and the keyring for a new cluster; returns the new fsid."""
    fsid = str(uuid.uuid4())
    for directory in (paths.root, paths.run_dir, paths.log_dir, paths.osd_data, paths.mon_data.parent,
                      paths.root / "crash",
                      paths.root / "rgw"):
        directory.mkdir(parents=True, exist_ok=True)
    paths.conf.write_text(render_conf(paths, fsid, mon_port))
    keys = {entity: cephx_key() for entity in ("mon.", "client.admin", f"osd.{OSD_ID}", RGW_NAME)}
    paths.keyring.write_text(render_keyring(keys))
    paths.keyring.chmod(0o600)
    return fsid


def write_credentials(paths: CephPaths, creds: S3Credentials) -> None:
    paths.credentials.write_text(json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}))
    paths.credentials.chmod(0o600)


def read_credentials(paths: CephPaths) -> S3Credentials:
    data = json.loads(paths.credentials.read_text())
    return S3Credentials(access_key=data["access_key"], secret_key=data["secret_key"])


def conf_value(paths: CephPaths, key: str) -> str | None:
    """A value from the written ceph.conf (first match), e.g. the mon host of an existing cluster."""
    try:
        text = paths.conf.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None

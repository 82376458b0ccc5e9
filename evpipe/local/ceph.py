"""A local S3 server: single-node Ceph (one mon, one OSD on a sparse file) and a RADOS Gateway.

All state lives under ``<state_dir>/ceph/``; the daemons run detached (they
outlive the command that started them) and are tracked by pid files there.
``ensure()`` reuses a healthy gateway, restarts the daemons of an existing
cluster, or bootstraps a new one (about 20 s), and raises StartError naming
the failed step and its log. The daemons run as the calling user (no
``--setuser``; every path they write is under the state dir); tested as root.
Debian's packages: ceph-mon ceph-osd radosgw ceph-common (infra/local/install-ceph.sh).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evpipe.local.ceph_files import (
    DEV_ACCESS_KEY,
    DEV_SECRET_KEY,
    MON_ID,
    OSD_ID,
    RGW_NAME,
    S3_USER,
    CephPaths,
    S3Credentials,
    conf_value,
    read_credentials,
    write_cluster_files,
    write_credentials,
)
from evpipe.local.daemon import Daemon, StartError, free_port, port_open, start_lock

DEFAULT_PORT = 7480
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
INSTALL_HINT = "install them with: bash infra/local/install-ceph.sh (Debian: ceph-mon ceph-osd radosgw ceph-common)"


def progress(message: str) -> None:
    """Start-up steps go to stderr, so `evpipe dev up` keeps its stdout for the status table."""
    print(f"ceph: {message}", file=sys.stderr, flush=True)


def check_binaries() -> None:
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        raise StartError(f"Ceph is not installed (missing {', '.join(missing)}); {INSTALL_HINT}")


@dataclass(frozen=True)
class RadosGateway:
    """One radosgw process of the cluster on its own loopback port.

    Several gateways can serve one cluster: a fault test takes its own gateway
    down (pause, stop) without disturbing the tests sharing the main one.
    """

    paths: CephPaths
    port: int
    host: str = "127.0.0.1"
    # Garbage collection and lifecycle run in the main gateway only; an extra one
    # without them also stops at once (no 5 s wait for the lifecycle lock).
    housekeeping: bool = True

    @property
    def daemon(self) -> Daemon:
        return Daemon(f"rgw-{self.port}", self.paths.root)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self, timeout: float = 2.0) -> bool:
        """An anonymous GET / answered with S3's bucket-list XML."""
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=timeout) as response:
                return b"ListAllMyBucketsResult" in response.read(4096)
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        if self.daemon.pid() is not None:
            return
        self.paths.rgw_log(self.port).parent.mkdir(parents=True, exist_ok=True)
        self.daemon.start([
            "radosgw", "-f", "-c", str(self.paths.conf), "-n", RGW_NAME,
            "--rgw-frontends", f"beast endpoint={self.host}:{self.port}",
            "--log-file", str(self.paths.rgw_log(self.port)),
            "--admin-socket", str(self.paths.rgw_socket(self.port)),
            *([] if self.housekeeping else ["--rgw-enable-gc-threads=false", "--rgw-enable-lc-threads=false"]),
        ])

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.daemon.pid() is None:
                raise StartError(f"radosgw exited at start (port {self.port} in use?); "
                                 f"log {self.paths.rgw_log(self.port)}:\n{self.daemon.log_tail()}")
            time.sleep(0.2)
        raise StartError(f"radosgw did not answer S3 on {self.endpoint} within {timeout:.0f}s; "
                         f"logs {self.paths.rgw_log(self.port)} and {self.paths.log_dir}")

    def stop(self) -> bool:
        self.resume()  # a stopped (SIGSTOP) process would not act on SIGTERM until continued
        return self.daemon.stop()

    def pause(self) -> None:
        """Freeze the gateway (SIGSTOP): connections are accepted but never answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def paused(self) -> bool:
        pid = self.daemon.pid()
        if pid is None:
            return False
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "T"
        return False

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.daemon.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


@dataclass(frozen=True)
class LocalCeph:
    state_dir: Path
    port: int = DEFAULT_PORT

    @property
    def paths(self) -> CephPaths:
        return CephPaths(self.state_dir.resolve() / "ceph")  # ceph.conf holds absolute paths

    @property
    def mon(self) -> Daemon:
        return Daemon("mon", self.paths.root)

    @property
    def osd(self) -> Daemon:
        return Daemon("osd", self.paths.root)

    @property
    def rgw(self) -> RadosGateway:
        return RadosGateway(self.paths, self.port)

    @property
    def endpoint(self) -> str:
        return self.rgw.endpoint

    def healthy(self) -> bool:
        return self.rgw.healthy()

    def credentials(self) -> S3Credentials:
        """The S3 user's keys (created by the bootstrap, kept in <state>/ceph/s3-credentials.json)."""
        try:
            return read_credentials(self.paths)
        except FileNotFoundError:
            if self.healthy() and dev_credentials_work(self.endpoint):
                return S3Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY)  # reusing another checkout's cluster
            raise StartError(f"no S3 credentials in {self.paths.credentials}: run ensure() "
                             "(`evpipe dev up --s3`) first") from None

    def ensure(self, timeout: float = 90.0) -> str:
        """Start what is missing; returns 'reused' when the gateway already answered, else 'started'."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with start_lock(self.paths.root, "start"):
            if self.rgw.paused():
                self.rgw.resume()  # left paused by an interrupted fault test
                time.sleep(0.5)
            if self.healthy():
                if self.rgw.daemon.pid() is None and dev_credentials_work(self.endpoint):
                    # Another checkout's local Ceph on this port: every local cluster
                    # has the same dev user, so it serves us just as well.
                    return "reused"
                if self.rgw.daemon.pid() is None:
                    raise StartError(
                        f"port {self.port} already serves S3, but not from {self.paths.root} (a radosgw of "
                        "another state dir, or one whose state dir was deleted): stop that one or pick another "
                        "port (EVPIPE_S3_PORT)")
                return "reused"
            if self.rgw.daemon.pid() is None and port_open(self.rgw.host, self.port):
                raise StartError(f"port {self.port} is in use by something that is not an S3 server; "
                                 "stop it or pick another port (EVPIPE_S3_PORT)")
            check_binaries()
            if not self.paths.ready_marker.exists():
                self._bootstrap(timeout)
                return "started"
            try:
                self._restart(timeout)
            except StartError as exc:
                raise StartError(f"{exc}\nTo start over with an empty S3: evpipe dev down, then "
                                 f"rm -rf {self.paths.root}") from None
            return "started"

    def stop(self) -> bool:
        """Stop every gateway, the OSD and the mon; True when something was running."""
        gateways = [RadosGateway(self.paths, int(p.stem.removeprefix("rgw-")), housekeeping=False)
                    for p in self.paths.root.glob("rgw-*.pid")]
        stopped = [gw.stop() for gw in gateways]
        stopped += [self.osd.stop(timeout=20.0), self.mon.stop()]
        return any(stopped)

    # Fault injection for tests: the main gateway only (see gateway() for a private one).
    def pause(self) -> None:
        self.rgw.pause()

    def resume(self) -> None:
        self.rgw.resume()

    def stop_rgw(self) -> bool:
        return self.rgw.stop()

    def start_rgw(self, timeout: float = 30.0) -> None:
        self.rgw.start()
        self.rgw.wait_healthy(timeout)

    def gateway(self, port: int | None = None, timeout: float = 30.0) -> RadosGateway:
        """Another gateway on the running cluster (same buckets, same credentials); stop() it when done."""
        gateway = RadosGateway(self.paths, port or free_port(), housekeeping=False)
        gateway.start()
        gateway.wait_healthy(timeout)
        return gateway

    def _restart(self, timeout: float) -> None:
        progress(f"restarting the cluster in {self.paths.root}")
        if self.mon.pid() is None:
            self._start_mon()
        if self.osd.pid() is None:
            self._start_daemon(self.osd, ["ceph-osd", "-f", "-i", str(OSD_ID), "-c", str(self.paths.conf)])
        self.rgw.start()
        self.rgw.wait_healthy(timeout)
        progress(f"S3 ready on {self.endpoint}")

    def _bootstrap(self, timeout: float) -> None:
        started = time.monotonic()
        self._wipe()
        mon_port = free_port()
        progress(f"creating a single-node cluster in {self.paths.root} (mon on 127.0.0.1:{mon_port})")
        fsid = write_cluster_files(self.paths, mon_port)
        self._run(["monmaptool", "--create", "--fsid", fsid, "--addv", MON_ID, f"[v2:127.0.0.1:{mon_port}]",
                   str(self.paths.monmap)], "create the monmap")
        self._run(["ceph-mon", "--mkfs", "-i", MON_ID, "-c", str(self.paths.conf), "--monmap",
                   str(self.paths.monmap), "--keyring", str(self.paths.keyring)], "mkfs the mon")
        self._start_mon()
        progress("mon up; creating the OSD (bluestore on a sparse file)")
        osd_uuid = str(uuid.uuid4())
        self._run(["ceph", "-c", str(self.paths.conf), "-n", "client.admin", "--connect-timeout", "30",
                   "osd", "new", osd_uuid, str(OSD_ID)], "register the OSD with the mon")
        self._run(["ceph-osd", "-c", str(self.paths.conf), "-i", str(OSD_ID), "--mkfs", "--osd-uuid", osd_uuid],
                  "mkfs the OSD")
        self._start_daemon(self.osd, ["ceph-osd", "-f", "-i", str(OSD_ID), "-c", str(self.paths.conf)])
        progress("OSD up; starting radosgw (it creates its pools on first start)")
        self.rgw.start()
        self.rgw.wait_healthy(max(10.0, timeout - (time.monotonic() - started)))
        self._create_user()
        self.paths.ready_marker.write_text(f"{time.time():.0f}\n")
        progress(f"S3 ready on {self.endpoint} after {time.monotonic() - started:.0f}s")

    def _create_user(self) -> None:
        creds = S3Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY)
        self._run(["radosgw-admin", "-c", str(self.paths.conf), "-n", "client.admin", "user", "create",
                   f"--uid={S3_USER}", "--display-name=evpipe local development",
                   f"--access-key={creds.access_key}", f"--secret={creds.secret_key}"], "create the S3 user")
        write_credentials(self.paths, creds)

    def _start_mon(self) -> None:
        self._start_daemon(self.mon, ["ceph-mon", "-f", "-i", MON_ID, "-c", str(self.paths.conf)])
        host, _, port = (conf_value(self.paths, "mon host") or "").strip("[]").removeprefix("v2:").partition(":")
        deadline = time.monotonic() + 15
        while not port_open(host, int(port)):
            if self.mon.pid() is None or time.monotonic() > deadline:
                raise StartError(f"ceph-mon did not listen on {host}:{port} (port taken?); "
                                 f"logs {self.paths.log_dir / 'ceph-mon.log'} and {self.mon.log_file}:\n"
                                 f"{self.mon.log_tail()}")
            time.sleep(0.1)

    def _start_daemon(self, daemon: Daemon, argv: Sequence[str]) -> None:
        daemon.start(argv)
        time.sleep(0.3)
        if daemon.pid() is None:
            raise StartError(f"{argv[0]} exited at start; logs {self.paths.log_dir} and {daemon.log_file}:\n"
                             f"{daemon.log_tail()}")

    def _run(self, argv: Sequence[str], step: str, timeout: float = 60.0) -> str:
        """Run one bootstrap step; its output goes to <ceph>/log/bootstrap.log."""
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.paths.log_dir / "bootstrap.log"
        try:
            result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise StartError(f"Ceph bootstrap step '{step}' timed out after {timeout:.0f}s; "
                             f"logs in {self.paths.log_dir}") from None
        with open(log, "a") as out:
            out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise StartError(f"Ceph bootstrap step '{step}' failed (exit {result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-1500:]}\nlogs in {self.paths.log_dir}")
        return result.stdout

    def _wipe(self) -> None:
        """Remove a half-made cluster (no ready marker), keeping the start lock."""
        self.stop()
        for entry in self.paths.root.iterdir():
            if entry.name == "start.lock":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def main() -> None:
    """`python -m evpipe.local.ceph STATE_DIR [PORT]`: start (or reuse) a cluster and print its endpoint."""
    state_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".evpipe")
    ceph = LocalCeph(state_dir.resolve(), int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_PORT)
    print(ceph.ensure(), ceph.endpoint)


if __name__ == "__main__":
    main()


def dev_credentials_work(endpoint: str) -> bool:
    """True when the S3 server at ``endpoint`` accepts the local dev user (a local evpipe Ceph)."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=DEV_ACCESS_KEY,
                          aws_secret_access_key=DEV_SECRET_KEY, region_name="us-east-1",
                          config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
    try:
        client.list_buckets()
        return True
    except Exception:  # noqa: BLE001 (deliberate: reported, never swallowed silently)
        return False

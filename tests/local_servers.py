"""The local servers the test suite runs for this checkout (Tansu, `evpipe clickhouse serve`, Ceph): which
are running, and how to stop them.

The session fixtures start them once and leave them running, so the next session reuses them instead
of waiting for them to start again (Ceph takes about 20 s). The end of each session lists them
(tests/conftest.py); ``python -m tests.local_servers stop`` stops them, ``python -m tests.local_servers``
lists them. Only servers whose pid files are in this checkout's test state directory count: a server
of another checkout that a fixture reused belongs to that checkout.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from evpipe.local.daemon import Daemon
from tests.providers import TEST_STATE_DIR

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalServer:
    name: str
    daemons: tuple[Daemon, ...]  # the processes it is made of, by their pid files

    def pids(self) -> list[int]:
        return [pid for pid in (d.pid() for d in self.daemons) if pid is not None]


def _port(daemon: Daemon) -> str:
    return daemon.name.rsplit("-", 1)[-1]


def servers(state_dir: Path = TEST_STATE_DIR) -> list[LocalServer]:
    """Every server with a pid file in the state directory, whether or not it still runs."""
    found = [LocalServer(f"Tansu broker on 127.0.0.1:{_port(d)}", (d,)) for d in _daemons(state_dir, "tansu")]
    found += [LocalServer(f"ClickHouse (evpipe clickhouse serve) on 127.0.0.1:{_port(d)}", (d,))
              for d in _daemons(state_dir, "clickhouse")]
    ceph = state_dir / "ceph"
    gateways = _daemons(ceph, "rgw")
    ports = ", ".join(f"127.0.0.1:{_port(d)}" for d in gateways) or "no gateway"
    parts = (Daemon("mon", ceph), Daemon("osd", ceph), *gateways)
    found.append(LocalServer(f"Ceph (mon, osd, radosgw on {ports})", parts))
    return found


def _daemons(directory: Path, prefix: str) -> list[Daemon]:
    return [Daemon(p.stem, directory) for p in sorted(directory.glob(f"{prefix}-*.pid"))]


def running(state_dir: Path = TEST_STATE_DIR) -> list[LocalServer]:
    return [server for server in servers(state_dir) if server.pids()]


def stop(state_dir: Path = TEST_STATE_DIR) -> list[str]:
    """Stop every running server of the state directory; the names of those stopped."""
    from evpipe.local.ceph import LocalCeph

    stopped = []
    for server in running(state_dir):
        if server.name.startswith("Ceph"):
            LocalCeph(state_dir).stop()  # gateways, then the OSD, then the monitor
        else:
            for daemon in server.daemons:
                daemon.stop(timeout=60.0)
        stopped.append(server.name)
    return stopped


def stop_command() -> str:
    """The shell command that stops them, as typed in any directory."""
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    env = ""
    if os.environ.get("EVPIPE_TEST_STATE_DIR"):
        env = f"EVPIPE_TEST_STATE_DIR={shlex.quote(str(TEST_STATE_DIR))} "
    return f"cd {shlex.quote(str(REPO))} && {env}{shown} -m tests.local_servers stop"


def summary(state_dir: Path = TEST_STATE_DIR) -> list[str]:
    """The end-of-session note: what keeps running for the next session, and how to stop it."""
    alive = running(state_dir)
    if not alive:
        return []
    lines = [f"{s.name}, pid {', '.join(map(str, s.pids()))}" for s in alive]
    return [*lines, f"The next session reuses them (state in {state_dir}). Stop them with:", f"  {stop_command()}"]


def main(argv: list[str]) -> int:
    if argv == ["stop"]:
        stopped = stop()
        print("\n".join(f"stopped {name}" for name in stopped) or "no local test server was running")
        return 0
    if argv:
        print("usage: python -m tests.local_servers [stop]", file=sys.stderr)
        return 2
    print("\n".join(summary()) or "no local test server is running")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

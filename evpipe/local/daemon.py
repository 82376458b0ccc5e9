"""Background server processes tracked by pid files under the state directory.

A daemon is started detached (its own session, output to a log file), so it
outlives the command that started it; `evpipe dev down` stops it by pid.
Starts are serialised with a file lock so parallel test workers reuse one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


class StartError(RuntimeError):
    """A server could not start; the message says why and points at its log."""


@dataclass(frozen=True)
class Daemon:
    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=cwd,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process if it runs; True when something was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, timeout)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_lock(state_dir: Path, name: str) -> Iterator[None]:
    """Serialise start-ups of one server across processes (e.g. pytest-xdist workers)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_started(daemon: Daemon, healthy: Callable[[], bool], argv: Sequence[str], env: dict[str, str],
                   timeout: float, what: str, exit_hint: str) -> str:
    """Start ``daemon`` unless ``healthy()`` already holds (under a start lock); 'reused' or 'started'.

    Raises StartError naming ``what`` and the log when the process exits at start or never gets healthy.
    """
    with start_lock(daemon.state_dir, daemon.name):
        if healthy():
            return "reused"
        daemon.start(argv, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy():
                return "started"
            if daemon.pid() is None:
                raise StartError(f"{what} exited at start ({exit_hint}); log {daemon.log_file}:\n{daemon.log_tail()}")
            time.sleep(0.1)
        raise StartError(f"{what} did not answer within {timeout:.0f}s; log {daemon.log_file}")

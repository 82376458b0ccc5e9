"""A tiny process supervisor for the local stack: run a command, restart it when it dies.

`evpipe dev up` starts one supervisor per pipeline process (gateway, archiver,
loader) as a detached daemon. The supervisor restarts its child with capped
backoff when it exits unexpectedly, and on SIGTERM stops the child gracefully
(SIGTERM, then SIGKILL after a grace period) and exits.

Run as: python -m infra.local.supervisor --name NAME [--grace S] -- COMMAND...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType


class Supervisor:
    def __init__(self, name: str, argv: Sequence[str], grace: float) -> None:
        self.name = name
        self.argv = list(argv)
        self.grace = grace
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.child and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        backoff = 1.0
        while not self.stopping:
            started = time.monotonic()
            log(self.name, f"starting: {' '.join(self.argv)}")
            self.child = subprocess.Popen(self.argv)
            code = self._wait_child()
            if self.stopping:
                break
            # A child that ran for a while earns a fresh backoff.
            backoff = 1.0 if time.monotonic() - started > 30 else min(backoff * 2, 30.0)
            log(self.name, f"exited with code {code}; restarting in {backoff:.0f}s")
            self._sleep(backoff)
        log(self.name, "stopped")
        return 0

    def _wait_child(self) -> int:
        assert self.child is not None
        while True:
            try:
                code = self.child.wait(timeout=0.5)
                return code
            except subprocess.TimeoutExpired:
                if self.stopping:
                    try:
                        return self.child.wait(timeout=self.grace)
                    except subprocess.TimeoutExpired:
                        self.child.kill()
                        return self.child.wait()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.2)


def log(name: str, message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor[{name}] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.supervisor",
                                     description="Run a command and restart it when it dies.")
    parser.add_argument("--name", required=True, help="name used in log lines")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds the child gets to stop on SIGTERM")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required after --")
    return Supervisor(args.name, command, args.grace).run()


if __name__ == "__main__":
    sys.exit(main())

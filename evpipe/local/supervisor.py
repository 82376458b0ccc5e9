"""A tiny process supervisor for the local stack: run a command, restart it when it dies.

`evpipe dev up` starts one supervisor per pipeline process (gateway, archiver,
loader) as a detached daemon. The supervisor restarts its child when it exits
unexpectedly, and on SIGTERM stops the child gracefully (SIGTERM, then SIGKILL
after a grace period) and exits.

A child that ran stably before it died (killed, crashed once) is restarted after
a short fixed delay, however often that happens: every second it is down its
clients are refused. Only a crash loop, a child that dies soon after starting
(bad config, port taken), backs off exponentially up to a cap, so it does not
burn a core.

Run as: python -m evpipe.local.supervisor --name NAME [--grace S] [--stable-s S] -- COMMAND...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class RestartPolicy:
    """How long to wait before restarting a child that ran for ``ran_s`` seconds."""

    # Long enough to tell a crash loop from a running process: a child with a bad config or a
    # taken port dies within a second or two; the gateway answers its health check after about one.
    stable_s: float = 3.0
    restart_delay_s: float = 0.5  # after a stable run: just enough not to spin if the host is in trouble
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    _backoff_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._backoff_s = self.first_backoff_s

    def delay_after(self, ran_s: float) -> float:
        if ran_s >= self.stable_s:
            self._backoff_s = self.first_backoff_s  # a stable run earns a fresh backoff
            return self.restart_delay_s
        delay = self._backoff_s
        self._backoff_s = min(delay * 2, self.max_backoff_s)
        return delay


class Supervisor:
    def __init__(self, name: str, argv: Sequence[str], grace: float, policy: RestartPolicy | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.grace = grace
        self.policy = policy or RestartPolicy()
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.child and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        while not self.stopping:
            started = time.monotonic()
            log(self.name, f"starting: {' '.join(self.argv)}")
            self.child = subprocess.Popen(self.argv)
            code = self._wait_child()
            if self.stopping:
                break
            ran_s = time.monotonic() - started
            delay = self.policy.delay_after(ran_s)
            log(self.name, f"exited with code {code} after {ran_s:.1f}s; restarting in {delay:.1f}s")
            self._sleep(delay)
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
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))  # short naps: a SIGTERM is handled between them


def log(name: str, message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor[{name}] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evpipe.local.supervisor",
                                     description="Run a command and restart it when it dies.")
    parser.add_argument("--name", required=True, help="name used in log lines")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds the child gets to stop on SIGTERM")
    default = RestartPolicy()
    parser.add_argument("--stable-s", type=float, default=default.stable_s,
                        help="a child that ran this long is restarted after --restart-delay-s, backoff reset")
    parser.add_argument("--restart-delay-s", type=float, default=default.restart_delay_s,
                        help="delay before restarting a child that ran stably")
    parser.add_argument("--backoff-s", type=float, default=default.first_backoff_s,
                        help="first delay in a crash loop, doubled each time")
    parser.add_argument("--max-backoff-s", type=float, default=default.max_backoff_s, help="cap of the backoff")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required after --")
    policy = RestartPolicy(args.stable_s, args.restart_delay_s, args.backoff_s, args.max_backoff_s)
    return Supervisor(args.name, command, args.grace, policy).run()


if __name__ == "__main__":
    sys.exit(main())

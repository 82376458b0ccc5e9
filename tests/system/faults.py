"""The fault scheduler: injects faults one after another, at random times, into supervised processes.

Faults act on the *real* processes behind the local supervisors (evpipe.local.supervisor), which
restart a child that died, as Kubernetes would restart a pod. Each fault records when it ended and
how long the system took to be healthy again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from evpipe.local.daemon import Daemon
from evpipe.local.stack import http_ok


@dataclass(frozen=True)
class Target:
    """A supervised process: its supervisor daemon name and the URL that answers when it is healthy."""

    name: str
    health_url: str


def child_pid(state: Path, name: str) -> int | None:
    sup = Daemon(name, state).pid()
    if sup is None:
        return None
    try:
        children = psutil.Process(sup).children()
    except psutil.Error:
        return None
    return children[0].pid if children else None


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not within {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


class CatchUp(Protocol):
    """A check made from a snapshot of what was acknowledged: passes once that snapshot is sunk."""

    def __call__(self) -> bool: ...

    def behind(self) -> str:
        """What of the snapshot is not sunk yet, in words (for a timeout's message)."""
        ...


@dataclass
class FaultScheduler:
    state: Path
    targets: list[Target]
    broker_pid: int
    pause_s: tuple[float, float] = (2.0, 2.5)  # broker pause (SIGSTOP) length
    outage_s: tuple[float, float] = (5.0, 8.0)  # ClickHouse (and S3) outage length
    gap_s: tuple[float, float] = (2.0, 6.0)  # quiet time between faults
    # EVPIPE_FAULT_SEED replays a failed run's order of faults (the seed is printed at the start).
    seed: int = field(default_factory=lambda: int(os.environ.get("EVPIPE_FAULT_SEED") or random.randrange(1 << 30)))
    injected: Counter[str] = field(default_factory=Counter)
    s3_gateway: Any = None  # evpipe.local.ceph.RadosGateway the archivers write through, for "s3_down"
    caught_up: Callable[[], CatchUp] | None = None  # snapshot now; the check passes once it is sunk
    lag: Callable[[], str] | None = None  # the consumer groups' lag by partition, in words (for a timeout)
    recovery_s: dict[str, float] = field(default_factory=dict)  # kind: worst time from fault end to caught up
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def run(self, kinds: list[str], deadline: float) -> None:
        """Inject each of ``kinds`` once (shuffled), with random gaps, until ``deadline`` (monotonic)."""
        order = list(kinds)
        self.rng.shuffle(order)
        for kind in order:
            if time.monotonic() > deadline:
                break
            time.sleep(self.rng.uniform(*self.gap_s))
            self.inject(kind)

    def inject(self, kind: str) -> None:
        """One fault; then wait until every process is healthy and all acknowledged so far is sunk."""
        started = time.monotonic()
        if kind.startswith("kill9_"):
            self.kill9(kind.removeprefix("kill9_"))
        else:
            {"broker_pause": self.broker_pause, "clickhouse_pause": self.clickhouse_pause,
             "s3_down": self.s3_down, "rolling_restart": self.rolling_restart}[kind]()
        ended = time.monotonic()
        check = self.caught_up() if self.caught_up else None
        try:
            wait_for(lambda: self.all_healthy() and (check is None or check()), 240,
                     f"healthy and caught up after {kind}", poll=1.0)
        except AssertionError as exc:  # say which part is behind: a bare timeout cannot be diagnosed from CI's log
            raise AssertionError(f"{exc} (replay the order: EVPIPE_FAULT_SEED={self.seed}); "
                                 f"{self.diagnose(check)}") from None
        took = time.monotonic() - ended
        self.injected[kind] += 1
        self.recovery_s[kind] = max(self.recovery_s.get(kind, 0.0), took)
        self.log.append(f"{kind}: lasted {ended - started:.1f}s, caught up {took:.1f}s after")

    def all_healthy(self) -> bool:
        return all(http_ok(t.health_url) for t in self.targets)

    def diagnose(self, check: CatchUp | None) -> str:
        unhealthy = [t.name for t in self.targets if not http_ok(t.health_url)]
        behind = check.behind() if check is not None else "not checked"
        lag = self.lag() if self.lag else "not checked"
        tails = "\n".join(f"--- {t.name}\n{Daemon(t.name, self.state).log_tail(25)}" for t in self.targets)
        return f"unhealthy: {unhealthy or 'none'}; behind: {behind}\nlag: {lag}\nlogs:\n{tails}"

    def kill9(self, tier: str) -> None:
        """kill -9 one replica of ``tier`` (gateway, archiver, loader, clickhouse), chosen at random."""
        target = self.rng.choice([t for t in self.targets if t.name.rstrip("0123456789") == tier])
        self._kill(target, signal.SIGKILL)
        self.log.append(f"kill -9 {target.name}")

    def _kill(self, target: Target, sig: signal.Signals) -> None:
        pid = child_pid(self.state, target.name)
        assert pid is not None, f"{target.name} has no running child"
        os.kill(pid, sig)
        # The supervisor starts a new child (after its backoff); wait for the new pid to answer.
        wait_for(lambda: child_pid(self.state, target.name) not in (None, pid), 60, f"{target.name} restarted")
        wait_for(lambda: http_ok(target.health_url), 120, f"{target.name} healthy")

    def broker_pause(self) -> None:
        os.kill(self.broker_pid, signal.SIGSTOP)
        try:
            time.sleep(self.rng.uniform(*self.pause_s))
        finally:
            os.kill(self.broker_pid, signal.SIGCONT)

    def clickhouse_pause(self) -> None:
        """SIGSTOP the ClickHouse server: the loaders' requests hang, as against a frozen or unreachable server."""
        pid = child_pid(self.state, "clickhouse")
        assert pid is not None, "clickhouse has no running child"
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(self.rng.uniform(*self.outage_s))
        finally:
            os.kill(pid, signal.SIGCONT)

    def s3_down(self) -> None:
        """SIGSTOP the archivers' S3 endpoint: their requests hang, as against an unreachable S3."""
        assert self.s3_gateway is not None, "s3_down needs the stack's S3 gateway"
        self.s3_gateway.pause()
        try:
            time.sleep(self.rng.uniform(*self.outage_s))
        finally:
            self.s3_gateway.resume()

    def rolling_restart(self) -> None:
        """SIGTERM one process at a time; the next only once the previous is back and healthy."""
        for target in self.targets:
            self._kill(target, signal.SIGTERM)

"""What the peers bench measures on a :class:`~bench.peers.systems.System`: a timed run, and a kill -9 test.

Timed run: from the first message the consumer read to the moment the bench sees the last row durable
(rows in ClickHouse or in readable Parquet files; committed offsets for the no-op consumers), with
the CPU of every process involved (the consumer, the broker, the ClickHouse server where one is used)
sampled every 0.1 s and read at both ends.

Kill test: the same events into a fresh group and output; five times, start the consumer, wait for its
first message, wait a random time, kill -9 it; then run it once more until the group has committed
every offset, stop it (SIGTERM), and count what the output holds.
"""

from __future__ import annotations

import bisect
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.peers.systems import Audit, System

T = TypeVar("T")


class CpuMeter(threading.Thread):
    """Cumulative CPU seconds (user + system) of some processes, sampled on a thread."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        import psutil

        super().__init__(daemon=True)
        self.procs = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.times: list[float] = []
        self.totals: list[float] = []
        self.running = True

    def sample(self) -> None:
        import psutil

        total = 0.0
        for p in self.procs:
            try:
                for q in [p, *p.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                continue
        self.times.append(time.time())
        self.totals.append(total)

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> None:
        self.running = False
        self.join(5)

    def at(self, when: float) -> float:
        """CPU seconds at wall time ``when``, interpolated between the samples around it."""
        i = bisect.bisect_left(self.times, when)
        if i <= 0:
            return self.totals[0]
        if i >= len(self.times):
            return self.totals[-1]
        t0, t1, c0, c1 = self.times[i - 1], self.times[i], self.totals[i - 1], self.totals[i]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1


def wait_for(probe: Callable[[], T | None], proc: subprocess.Popen[bytes], timeout: float, interval: float,
              what: str, system: System, lifetime: int) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        if proc.poll() is not None:
            raise RuntimeError(f"{system.name} exited ({proc.returncode}) before {what}:\n{system.log_tail(lifetime)}")
        time.sleep(interval)
    raise RuntimeError(f"{system.name}: no {what} after {timeout:.0f}s:\n{system.log_tail(lifetime)}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM (flush, commit, leave the group), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass(frozen=True)
class Timed:
    seconds: float
    events_per_s: float
    cpu_s_per_m: float  # CPU seconds of every process involved, per million events


def timed_run(system: System, timeout: float = 600.0) -> Timed:
    n = system.ctx.n
    system.prepare("timed", record=False)
    proc = system.start(0)
    meter = CpuMeter([proc.pid, system.ctx.broker_pid, *system.extra_pids()])
    meter.start()
    try:
        first = wait_for(lambda: system.first_seen(0), proc, 120, 0.01, "first message", system, 0)
        last = wait_for(lambda: time.time() if system.durable() >= n else None, proc, timeout, 0.1,
                        f"{n:,} rows durable", system, 0)
        meter.sample()  # a sample after ``last``, so both ends fall between samples
    finally:
        meter.stop()
        stop(proc)
    seconds = last - first
    return Timed(seconds, n / seconds, (meter.at(last) - meter.at(first)) / n * 1e6)


@dataclass(frozen=True)
class Killed:
    kills: int
    kills_mid_run: int  # kills that came while offsets were still uncommitted
    missing: int
    duplicates: int
    audit: Audit


def kill_test(system: System, expected_s: float, kills: int = 5, seed: int = 21,
              timeout: float = 300.0) -> Killed:
    """Kill -9 the consumer ``kills`` times at random points, restart it, and count the output."""
    n = system.ctx.n
    rng = random.Random(f"{seed}-{system.slug}")
    system.prepare("kills", record=True)
    mid = 0
    for lifetime in range(1, kills + 1):
        proc = system.start(lifetime)
        try:
            # A lifetime that starts with everything committed reads nothing: kill it all the same.
            wait_for(lambda: system.first_seen(lifetime) or (1.0 if system.committed() >= n else None),  # noqa: B023
                     proc, 120, 0.02, "first message", system, lifetime)
            # Uniform over twice a fifth of the clean run, so five lifetimes span about one clean run.
            time.sleep(rng.uniform(0, 2 * expected_s / kills))
            mid += system.committed() < n
        finally:
            proc.kill()  # SIGKILL: no flush, no commit, no leaving the group
            proc.wait(30)
    final = system.start(kills + 1)
    try:
        wait_for(lambda: True if system.committed() >= n else None, final, timeout, 0.25,
                 "every offset committed after the kills", system, kills + 1)
        # Counted while the last lifetime runs: every system here commits an offset only once its rows are
        # durable, and the Kafka engine's rows are in the server that this lifetime is.
        audit = system.audit()
    finally:
        stop(final)
    return Killed(kills, mid, max(0, n - audit.distinct), audit.rows - audit.distinct, audit)


COLUMNS = ("pair", "system", "events_per_s", "lead", "cpu_s_per_m_events", "cpu_lead", "kills", "missing",
           "duplicates", "seconds", "note")


def row(consumer: System | None, timed: Timed | None, killed: Killed | None, **extra: Any) -> dict[str, Any]:
    """One table row, every column present (in the table's order) so each row reads the same."""
    out: dict[str, Any] = dict.fromkeys(COLUMNS)
    if consumer is not None:
        out |= {"pair": consumer.pair, "system": consumer.name}
    if timed is not None:
        out |= {"seconds": round(timed.seconds, 2), "events_per_s": round(timed.events_per_s),
                "cpu_s_per_m_events": round(timed.cpu_s_per_m, 1)}
    if killed is not None:
        # Kills that came while offsets were still uncommitted / kills.
        out |= {"kills": f"{killed.kills_mid_run}/{killed.kills}", "missing": killed.missing,
                "duplicates": killed.duplicates}
    return out | extra

"""The local-stack supervisor restarts a dying child and stops cleanly on SIGTERM.

A child that ran stably is restarted after a short fixed delay each time; a crash loop backs off.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evpipe.local.supervisor import RestartPolicy


def test_restarts_child_and_stops_on_sigterm(tmp_path: Path) -> None:
    counter = tmp_path / "starts"
    child = f"import pathlib,time; p=pathlib.Path({str(counter)!r}); p.write_text(p.read_text()+'x' if p.exists() else 'x'); time.sleep(0.2)"
    sup = subprocess.Popen([sys.executable, "-m", "evpipe.local.supervisor", "--name", "t", "--grace", "2", "--",
                            sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not counter.exists() or len(counter.read_text()) < 2):
            time.sleep(0.1)
        assert counter.exists() and len(counter.read_text()) >= 2, "child was not restarted"
    finally:
        sup.send_signal(signal.SIGTERM)
        out, _ = sup.communicate(timeout=15)
    assert sup.returncode == 0
    assert b"restarting" in out and b"stopped" in out


def test_policy_resets_after_a_stable_run_and_backs_off_in_a_crash_loop() -> None:
    policy = RestartPolicy(stable_s=5, restart_delay_s=0.5, first_backoff_s=1, max_backoff_s=30)
    assert [policy.delay_after(0.1) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay_after(5.0) == 0.5  # a stable run: restarted at once, backoff reset
    assert [policy.delay_after(0.1) for _ in range(2)] == [1, 2]
    assert [policy.delay_after(60) for _ in range(10)] == [0.5] * 10  # killed again and again: never backs off


def _supervise(child: str, *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "evpipe.local.supervisor", "--name", "t", "--grace", "2", *options,
                             "--", sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(sup: subprocess.Popen[bytes]) -> bytes:
    sup.send_signal(signal.SIGTERM)
    out, _ = sup.communicate(timeout=15)
    assert sup.returncode == 0, out
    return out


def _wait_for_new_pid(pid_file: Path, old: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pid_file.read_text() if pid_file.exists() else ""
        if text.endswith("\n") and int(text) != old:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"no new child within {timeout}s")


def test_a_child_killed_after_a_stable_run_is_restarted_quickly_every_time(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    child = f"import os,pathlib,time; pathlib.Path({str(pid_file)!r}).write_text(f'{{os.getpid()}}\\n'); time.sleep(60)"
    sup = _supervise(child, "--stable-s", "0.3", "--restart-delay-s", "0.1")
    try:
        pid = _wait_for_new_pid(pid_file, None, 20)
        for _ in range(5):
            time.sleep(0.4)  # longer than the stable period
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            pid = _wait_for_new_pid(pid_file, pid, 5)
            # The old fixed backoff doubled from 1 s; now each restart takes the delay plus a start-up.
            assert time.monotonic() - killed < 1.0
    finally:
        out = _stop(sup)
    assert out.count(b"restarting in 0.1s") == 5, out


def test_a_child_that_exits_at_once_backs_off_exponentially(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    child = f"import time; open({str(starts)!r}, 'a').write(f'{{time.time()}}\\n')"
    sup = _supervise(child, "--stable-s", "5", "--backoff-s", "0.2", "--max-backoff-s", "0.8")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not starts.exists() or len(starts.read_text().split()) < 6):
            time.sleep(0.05)
    finally:
        out = _stop(sup)
    times = [float(t) for t in starts.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)][:5]
    assert len(gaps) == 5, out
    # Delays 0.2, 0.4, 0.8, 0.8, 0.8 (capped), plus each child's start-up time.
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8], strict=True):
        assert delay <= gap < delay + 0.6, (gaps, out)
    assert b"restarting in 0.2s" in out and b"restarting in 0.8s" in out

"""The local-stack supervisor restarts a dying child and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def test_restarts_child_and_stops_on_sigterm(tmp_path: Path) -> None:
    counter = tmp_path / "starts"
    child = f"import pathlib,time; p=pathlib.Path({str(counter)!r}); p.write_text(p.read_text()+'x' if p.exists() else 'x'); time.sleep(0.2)"
    sup = subprocess.Popen([sys.executable, "-m", "infra.local.supervisor", "--name", "t", "--grace", "2", "--",
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

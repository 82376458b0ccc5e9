"""The summary table of a system run (printed at the end; docs/reliability.md copies it)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.system.faults import child_pid


def table(title: str, rows: dict[str, object]) -> str:
    width = max(len(k) for k in rows)
    lines = [f"== {title} ==", *(f"{k.ljust(width)}  {v}" for k, v in rows.items())]
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    out = os.environ.get("EVPIPE_SYSTEM_REPORT")  # optional: append each run's figures as JSON lines
    if out:
        with Path(out).open("a") as f:
            f.write(json.dumps({"title": title, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                **{k: str(v) for k, v in rows.items()}}) + "\n")
    return text


@dataclass(eq=False)
class RssWatch(threading.Thread):
    """Peak RSS (MiB) of each supervised process, sampled once a second across restarts."""

    state: Path
    names: list[str]
    peak_mib: dict[str, float] = field(default_factory=dict)
    series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    running: bool = True

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        while self.running:
            now: dict[str, float] = {}
            for name in self.names:
                pid = child_pid(self.state, name)
                try:
                    now[name] = psutil.Process(pid).memory_info().rss / 2**20 if pid else 0.0
                except psutil.Error:
                    now[name] = 0.0
                self.peak_mib[name] = max(self.peak_mib.get(name, 0.0), now[name])
            self.series.append((time.time(), now))
            time.sleep(1.0)

    def stop(self) -> None:
        self.running = False
        self.join(5)

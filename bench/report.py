"""Result output shared by every benchmark: a printed table and bench/results/NAME.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from evpipe.table import render_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REQUIRED_KEYS = ("events_per_s", "baseline_events_per_s", "ratio")
PIPELINE_KEYS = ("accepted", "archived", "loaded", "duplicates", "p99_ms")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_result(name: str, result: dict[str, Any], rows: list[dict[str, Any]] | None = None,
                 pipeline: bool = False, required: tuple[str, ...] = REQUIRED_KEYS) -> Path:
    """Validate the required keys, stamp date and machine, print a table, write the JSON.

    ``required``: a benchmark that measures something other than throughput (recovery times) names its own
    keys, ``ratio`` always among them (the lead over its baseline)."""
    missing = [k for k in required + (PIPELINE_KEYS if pipeline else ()) if k not in result]
    if missing:
        raise ValueError(f"benchmark {name} result lacks {missing}")
    result = {"name": name, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), **result}
    if rows:
        result["rows"] = rows
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(name, rows or [{k: result[k] for k in result if k not in ("rows",)}])
    if "events_per_s" in result:
        print(f"ratio {result['ratio']:.2f} = {result['events_per_s']:,.0f} / "
              f"{result['baseline_events_per_s']:,.0f} events/s -> {path}")
    else:
        print(f"ratio {result['ratio']:.2f} -> {path}")
    return path


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        print(f"\n## {title}\n\n{render_table(rows)}")

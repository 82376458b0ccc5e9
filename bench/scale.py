"""Scale-out: the end-to-end run with one gateway and one loader, then with two of each, in one run.

Both runs offer the same rate through ``bench.e2e.measure`` (a fresh private pipeline each; with two
gateways the load generator's connections go round-robin over both, as behind a load balancer). The rate
is above what one process per tier sustains here, so the accepted rate shows what the second processes
buy: the ratio of the two. Each row also gives core-seconds per million events (the pipeline's
processes; the broker and ClickHouse apart), and from it the cores per 100,000 events/s a deployment
needs with Kafka and ClickHouse on their own hosts (core-seconds per million x 0.1).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.e2e import measure
from bench.harness import Pipeline
from bench.report import write_result

LAYOUTS: dict[str, tuple[str, ...]] = {"1 gateway, 1 loader": (), "2 gateways, 2 loaders": ("gateway", "loader")}


def _row(layout: str, m: dict[str, Any]) -> dict[str, Any]:
    cost = m["core_s_per_million"]
    return {"layout": layout, "events_per_s": round(m["events_per_s"]), "accepted": m["accepted"],
            "archived": m["archived"], "loaded": m["loaded"], "duplicates": m["duplicates"],
            "non_2xx": m["non_2xx"], "p99_ms": round(m["p99_ms"]),
            "core_s_per_million": cost.get("pipeline"), "servers_core_s_per_million": cost.get("servers"),
            "cores_per_100k_events_per_s": round(cost.get("pipeline", 0.0) * 0.1, 2)}


def run(quick: bool = False) -> dict[str, Any]:
    rate, seconds = (30_000.0, 10.0) if quick else (100_000.0, 30.0)
    rows = []
    for layout, replicas in LAYOUTS.items():
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            print(f"{layout}: starting ...", flush=True)
            with Pipeline(Path(tmp), replicas=replicas) as pipe:
                rows.append(_row(layout, measure(pipe, rate, seconds)))
    one, two = rows
    result = {"offered_events_per_s": rate, "seconds": seconds,
              "events_per_s": two["events_per_s"], "baseline_events_per_s": one["events_per_s"],
              "ratio": two["events_per_s"] / max(1, one["events_per_s"])}  # what the second processes buy
    write_result("scale", result, rows)
    return result

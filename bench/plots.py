"""PNG plots of the end-to-end and step-load results, written next to their JSON in bench/results/.

Run alone to redraw from the saved JSON: python -m bench.plots
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.report import RESULTS_DIR


def _window_percentiles(points: list[tuple[float, float]], start: float, width: float = 5.0
                        ) -> tuple[list[float], dict[int, list[float]]]:
    from bench.harness import percentile

    buckets: dict[int, list[float]] = {}
    for at, ms in points:
        buckets.setdefault(int((at - start) // width), []).append(ms)
    xs = [(k + 0.5) * width for k in sorted(buckets)]
    return xs, {q: [percentile(buckets[k], q) / 1000 for k in sorted(buckets)] for q in (50, 90, 99)}


def plot_e2e(result: dict[str, Any], out: Path = RESULTS_DIR) -> list[Path]:
    series = result["series"]
    start = series["start"]
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4))
    xs, qs = _window_percentiles(series["latency"], start)
    for q, ys in qs.items():
        ax.plot(xs, ys, marker="o", label=f"p{q}")
    ax.axhline(5, color="red", linestyle="--", linewidth=1, label="target p99 5 s")
    ax.axvline(series["end"] - start, color="grey", linestyle=":", label="load ends")
    ax.set(xlabel="seconds since start", ylabel="ingest-to-queryable latency (s)",
           title=f"Latency percentiles over time (5 s windows), offered {result['offered_events_per_s']:,.0f} ev/s")
    ax.legend()
    paths.append(_save(fig, out / "e2e_latency.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    accepted = series["accepted_per_second"]
    ax.plot(range(len(accepted)), accepted, label="accepted by the gateway (events/s)")
    loaded = series["loaded"]
    rates = [((b[0] + a[0]) / 2 - start, (b[1] - a[1]) / (b[0] - a[0])) for a, b in itertools.pairwise(loaded)
             if b[0] > a[0]]
    if rates:
        ax.plot(*zip(*rates), label="loaded into ClickHouse (events/s)", alpha=0.7)
    ax.axhline(result["offered_events_per_s"], color="grey", linestyle="--", label="offered")
    ax.set(xlabel="seconds since start", ylabel="events/s", title="Throughput over time")
    ax.legend()
    paths.append(_save(fig, out / "e2e_throughput.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, points in sorted(series["cpu"].items()):
        ax.plot([p[0] - start for p in points], [p[1] for p in points], label=name)
    ax.axvline(series["end"] - start, color="grey", linestyle=":", label="load ends")
    ax.set(xlabel="seconds since start", ylabel="CPU (% of one core; the box has 2)", title="CPU per process")
    ax.legend()
    paths.append(_save(fig, out / "e2e_cpu.png"))
    return paths


def plot_step(result: dict[str, Any], out: Path = RESULTS_DIR) -> list[Path]:
    steps = result["steps"]
    fig, ax1 = plt.subplots(figsize=(8, 4))
    offered = [s["offered_events_per_s"] for s in steps]
    ax1.plot(offered, offered, color="grey", linestyle="--", label="offered = achieved")
    ax1.plot(offered, [s["events_per_s"] for s in steps], marker="o", label="accepted (events/s)")
    ax1.plot(offered, [s["loaded_events_per_s"] for s in steps], marker="s", label="loaded (events/s)")
    ax1.set(xlabel="offered load (events/s)", ylabel="events/s",
            title=f"Throughput vs offered load (ceiling {result['events_per_s']:,.0f} ev/s)")
    ax2 = ax1.twinx()
    ax2.plot(offered, [s["p99_ms"] / 1000 for s in steps], color="red", marker="x", label="p99 latency (s)")
    ax2.set_ylabel("p99 ingest-to-queryable (s)")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    return [_save(fig, out / "step_throughput.png")]


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    for name, plot in (("e2e", plot_e2e), ("step", plot_step)):
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            for p in plot(json.loads(path.read_text())):
                print(p)


if __name__ == "__main__":
    main()

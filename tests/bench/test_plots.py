"""Plots are drawn from result dictionaries shaped like the benchmarks' JSON."""

from __future__ import annotations

from pathlib import Path

from bench.harness import percentile
from bench.plots import plot_e2e, plot_step


def test_percentile_picks_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 51.0  # rank round(0.5 * 99) = 50 (to even), zero-based
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_plots_are_png_files(tmp_path: Path) -> None:
    start = 1_000.0
    e2e = {"offered_events_per_s": 1000, "series": {
        "start": start, "end": start + 10, "accepted_per_second": [1000] * 10,
        "loaded": [[start + i, 1000 * i] for i in range(12)],
        "latency": [[start + i, 800.0 + 10 * i] for i in range(12)],
        "cpu": {"gateway": [[start + i, 30.0, 100.0] for i in range(12)]}}}
    step = {"events_per_s": 2000, "steps": [
        {"offered_events_per_s": r, "events_per_s": r * 0.99, "loaded_events_per_s": r * 0.9, "p99_ms": 900.0}
        for r in (1000, 2000, 4000)]}
    paths = plot_e2e(e2e, tmp_path) + plot_step(step, tmp_path)
    assert {p.name for p in paths} == {"e2e_latency.png", "e2e_throughput.png", "e2e_cpu.png",
                                       "step_throughput.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

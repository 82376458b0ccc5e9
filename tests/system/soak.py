"""The soak: the Stage 3 stack (gateway x2, archiver x2, loader) at 50 % of the measured ceiling, for long.

Not part of CI (30 minutes by default). Load from the benchmark load generator (it counts events; with
millions of events, per-id tracking would not fit in memory); every 5 s it samples the RSS of each
process and the consumer lag the archivers and the loader report, then plots both over time, to catch
leaks and a lag that never returns to zero. At the end, everything accepted must be loaded and archived.

    .venv/bin/python -m tests.system.soak                 # 30 min at 50 % of bench/results/step.json's ceiling
    .venv/bin/python -m tests.system.soak --minutes 2 --rate 2000 --out /tmp/soak   # a short check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from bench.harness import API_KEY
from bench.loadgen import LoadResult, LoadSpec, generate
from tests.system.report import RssWatch, table
from tests.system.stage3 import SystemStack

STEP_RESULT = Path(__file__).resolve().parents[2] / "bench" / "results" / "step.json"


def measured_ceiling() -> float:
    """The pipeline's throughput ceiling (events/s) from the last `python -m bench step` run."""
    try:
        return float(json.loads(STEP_RESULT.read_text())["throughput_ceiling_events_per_s"])
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise SystemExit(f"no measured ceiling in {STEP_RESULT} ({exc}); run `python -m bench step` "
                         "first or pass --rate") from None


def consumer_lag(metrics_url: str) -> float:
    """Sum of evpipe_consumer_lag over the partitions a consumer reports (NaN when it does not answer)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("evpipe_consumer_lag{"))


def sample_lag(stack: SystemStack, stop: threading.Event, out: list[tuple[float, dict[str, float]]]) -> None:
    consumers = {t.name: t.health_url.replace("/healthz", "/metrics") for t in stack.targets
                 if t.name.startswith(("archiver", "loader"))}
    while not stop.wait(5.0):
        out.append((time.time(), {name: consumer_lag(url) for name, url in consumers.items()}))


def load_both_gateways(stack: SystemStack, rate: float, seconds: float) -> LoadResult:
    """Half the rate to each gateway (as a load balancer would), both generators at once."""
    results: list[LoadResult] = []
    threads = [threading.Thread(target=lambda port=port: results.append(generate(LoadSpec(
        "127.0.0.1", port, API_KEY, rate=rate / 2, seconds=seconds, marker_every_s=0)))) for port in
        (stack.gateway_port, *stack.more_gateway_ports)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = LoadResult(rate, seconds)
    for r in results:
        total.merge(asdict(r))
    return total


def plot(rss: RssWatch, lag: list[tuple[float, dict[str, float]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = rss.series[0][0] if rss.series else time.time()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in rss.names:
        top.plot([(t - start) / 60 for t, _ in rss.series], [s.get(name, 0.0) for _, s in rss.series], label=name)
    top.set_ylabel("RSS (MiB)")
    top.legend(fontsize="small")
    for name in (lag[0][1] if lag else {}):
        bottom.plot([(t - start) / 60 for t, _ in lag], [s[name] for _, s in lag], label=name)
    bottom.set_ylabel("consumer lag (events)")
    bottom.set_xlabel("minutes")
    bottom.legend(fontsize="small")
    path = out / "soak.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.system.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="load duration (default 30)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="events/s (default: 50%% of the ceiling in bench/results/step.json)")
    parser.add_argument("--out", type=Path, default=None, help="directory for soak.png and soak.json "
                        "(default: a new temporary directory)")
    args = parser.parse_args()
    rate = args.rate or measured_ceiling() * 0.5
    out = args.out or Path(tempfile.mkdtemp(prefix="evpipe-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="evpipe-soak-state-") as work, SystemStack(Path(work)) as stack:
        rss, stop = RssWatch(stack.state, [t.name for t in stack.targets]), threading.Event()
        lag: list[tuple[float, dict[str, float]]] = []
        rss.start()
        lagger = threading.Thread(target=sample_lag, args=(stack, stop, lag), daemon=True)
        lagger.start()
        result = load_both_gateways(stack, rate, args.minutes * 60)
        loaded, archived, drain_s = stack.drain(result.accepted + stack.warm, max_s=600)
        stop.set()
        rss.stop()
        lagger.join(10)
        expected = result.accepted + stack.warm
        figures = {
            "minutes": args.minutes, "offered events/s": round(rate),
            "achieved events/s": round(result.accepted / (args.minutes * 60)), "events accepted (2xx)": result.accepted,
            "non-2xx answers": result.non_2xx, "lost (ClickHouse / archive)":
                f"{max(0, expected - loaded)} / {max(0, expected - archived)}",
            "extra rows (ClickHouse)": max(0, loaded - expected), "drain after load (s)": round(drain_s, 1),
            "RSS MiB first minute -> last minute": {
                name: f"{_avg(rss, name, first=True):.0f} -> {_avg(rss, name, first=False):.0f}" for name in rss.names},
            "plot": str(plot(rss, lag, out)),
        }
        table("Soak", figures)
        (out / "soak.json").write_text(json.dumps({k: str(v) for k, v in figures.items()}, indent=2))
        if loaded != expected or archived < expected:
            raise SystemExit("soak: events lost or duplicated (see the table)")


def _avg(rss: RssWatch, name: str, first: bool) -> float:
    window = rss.series[:60] if first else rss.series[-60:]
    values = [s.get(name, 0.0) for _, s in window]
    return sum(values) / len(values) if values else 0.0


if __name__ == "__main__":
    main()

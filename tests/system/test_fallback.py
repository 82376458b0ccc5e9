"""The gateway's durable fallback under a broker outage, with a client that never retries (issue #18).

The Stage 3 stack (gateway x2 sharing one fallback store, archiver x2, loader x2, ClickHouse); the broker
is SIGSTOPped while the client sends at a steady rate. Invariants: every event answered 2xx is in ClickHouse
and in the archive exactly once after the broker returns; the fallback store drains to empty; gateway RSS
stays bounded. The S3 run then stops the broker and the store's S3 endpoint together: every answer meanwhile
is a 503, and still nothing answered 2xx is lost.

CI form (default): a 60 s broker stop (and 20 s of both down), 100 events/s. Full form (EVPIPE_FULL=1): 10 minutes
(and 60 s), 200 events/s:

    EVPIPE_FULL=1 .venv/bin/pytest tests/system/test_fallback.py
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.harness import API_KEY
from gateway.fallback.store import FallbackStore, open_store
from tests.providers import Service
from tests.system.faults import wait_for
from tests.system.oneshot import ONESHOT_TYPE, OneShotLoad
from tests.system.report import RssWatch, table
from tests.system.stage3 import SystemStack

if TYPE_CHECKING:
    from evpipe.local.ceph import RadosGateway

FULL = os.environ.get("EVPIPE_FULL") == "1"
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.fault, pytest.mark.timeout(2700 if FULL else 900)]

STOP_S = 600.0 if FULL else 60.0  # the broker outage
BOTH_DOWN_S = 60.0 if FULL else 20.0  # broker and fallback store down together (S3 run)
RATE = 200.0 if FULL else 100.0  # events/s
BATCH = 20 if FULL else 10  # events a request: 10 requests/s either way, so the ~10 s answers of a
# both-down outage (deadline + store timeout) keep ~100 requests waiting, within the client's 128
DRAIN_BOUND_S = 300.0  # from the broker's return until the store is empty
SINK_BOUND_S = 240.0  # then until every 2xx'd event is in ClickHouse and the archive
GATEWAY_RSS_BOUND_MIB = 400.0
GATEWAYS = ("gateway", "gateway2")


@pytest.fixture
def local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SystemStack, FallbackStore]]:
    for name in ("ARCHIVE_URI", "GATEWAY_FALLBACK_URI"):
        monkeypatch.delenv(name, raising=False)  # the defaults: both under the state directory
    with SystemStack(tmp_path) as stack:
        yield stack, open_store(str(stack.state / "fallback"))


def test_fallback_on_local_disk_keeps_every_2xx_through_a_broker_outage(
        local_run: tuple[SystemStack, FallbackStore]) -> None:
    stack, store = local_run
    run_outages(stack, store, "Fallback to local disk, broker stopped")


@pytest.mark.s3
def test_fallback_on_s3_keeps_every_2xx_and_answers_503_when_both_are_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Service, s3_gateway: RadosGateway,
        s3_bucket: str) -> None:
    """The store on S3 through a radosgw of the test's own, which the second outage pauses with the broker."""
    uri = f"s3://{s3_bucket}/fallback/"
    for name, value in (("AWS_ACCESS_KEY_ID", s3.extra["access_key"]), ("AWS_SECRET_ACCESS_KEY", s3.extra["secret_key"]),
                        ("AWS_DEFAULT_REGION", s3.extra["region"]), ("GATEWAY_FALLBACK_URI", uri),
                        ("S3_ENDPOINT_URL", s3_gateway.endpoint), ("ARCHIVE_URI", "")):
        monkeypatch.setenv(name, value)
    with SystemStack(tmp_path) as stack:
        run_outages(stack, open_store(uri, s3.url), "Fallback to S3 (Ceph RGW), broker stopped", s3_gateway)


def run_outages(stack: SystemStack, store: FallbackStore, title: str, s3_gateway: RadosGateway | None = None) -> None:
    load = OneShotLoad(stack.urls, API_KEY, rate=RATE, batch=BATCH)
    rss = RssWatch(stack.state, list(GATEWAYS))
    rss.start()
    load.start()
    rows: dict[str, object] = {}
    try:
        time.sleep(5)
        rows |= broker_outage(stack, load, store, STOP_S)
        if s3_gateway is not None:
            time.sleep(5)
            rows |= broker_outage(stack, load, store, BOTH_DOWN_S, s3_gateway)
        time.sleep(5)
    finally:
        load.finish()
    sunk_s = _sunk_within(stack, load.acked, SINK_BOUND_S)
    rss.stop()
    check_sinks(stack, load, store, rss, rows | {"all acknowledged events sunk (s after the load)": sunk_s}, title)


def broker_outage(stack: SystemStack, load: OneShotLoad, store: FallbackStore, stop_s: float,
                  s3_gateway: RadosGateway | None = None) -> dict[str, object]:
    """SIGSTOP the broker (and the store's S3 endpoint) for ``stop_s``; then wait for the store to drain."""
    what = "broker and fallback store down" if s3_gateway else "broker stopped"
    if s3_gateway is not None:
        s3_gateway.pause()
    os.kill(stack.broker_pid, signal.SIGSTOP)
    stopped = time.monotonic()
    peak_pending = 0
    try:
        while time.monotonic() - stopped < stop_s:
            time.sleep(min(5.0, stop_s / 10))
            if s3_gateway is None:
                peak_pending = max(peak_pending, sum(p.events for p in store.pending()))
    finally:
        # Taken before the broker goes on: a request it acknowledges right after SIGCONT is no answer of the outage.
        resumed = time.monotonic()
        os.kill(stack.broker_pid, signal.SIGCONT)
        if s3_gateway is not None:
            s3_gateway.resume()
    # Sent once the outage had begun and answered before it ended: the fallback's answers only.
    during = load.answered_between(stopped + 1.0, resumed)
    drain_s = wait_for(lambda: not store.pending(), DRAIN_BOUND_S, "the fallback store drained", poll=0.5)
    if s3_gateway is not None:
        assert during and set(during) <= {503}, f"answers while broker and store were down: {dict(during)}"
    else:
        assert during and set(during) == {200}, f"answers while the broker was stopped: {dict(during)}"
    return {f"{what} (s)": round(stop_s), f"answers during '{what}'": dict(during),
            **({"peak events pending in the store": peak_pending} if s3_gateway is None else {}),
            f"store empty after '{what}' (s after its end)": round(drain_s, 1)}


def _sunk_within(stack: SystemStack, acked: set[str], bound: float) -> float:
    def sunk() -> bool:
        try:
            return acked <= set(stack.clickhouse_ids(ONESHOT_TYPE)) and acked <= set(stack.archive_ids(ONESHOT_TYPE))
        except Exception:  # a sink is still rejoining after the outage: not yet
            return False
    try:
        return round(wait_for(sunk, bound, "every acknowledged event loaded and archived", poll=1.0), 1)
    except AssertionError:
        return float("nan")  # the assertions below say what is missing


def gateway_metric(stack: SystemStack, name: str) -> float:
    total = 0.0
    for url in stack.urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            match = re.search(rf"^{name} (\S+)$", response.read().decode(), re.MULTILINE)
        total += float(match.group(1)) if match else 0.0
    return total


def check_sinks(stack: SystemStack, load: OneShotLoad, store: FallbackStore, rss: RssWatch,
                rows: dict[str, object], title: str) -> None:
    loaded, archived = Counter(stack.clickhouse_ids(ONESHOT_TYPE)), Counter(stack.archive_ids(ONESHOT_TYPE))
    acked = load.acked
    lost_ch, lost_archive = acked - set(loaded), acked - set(archived)
    dup_ch = {i for i, n in loaded.items() if n > 1}
    dup_archive = {i for i, n in archived.items() if n > 1}
    refused_but_sunk = load.refused & set(loaded)
    stored, drained = (gateway_metric(stack, f"evpipe_gateway_fallback_events_{k}_total") for k in ("stored", "drained"))
    table(title + (" (full)" if FULL else " (CI form)"), {
        "events sent": len(acked) + len(load.refused),
        "answers by status": dict(load.statuses),
        "requests the client could not start (pool full)": load.skipped,
        "events answered 2xx": len(acked),
        **rows,
        "events stored in the fallback / drained from it": f"{stored:.0f} / {drained:.0f}",
        "lost (ClickHouse / archive)": f"{len(lost_ch)} / {len(lost_archive)}",
        "duplicated (ClickHouse / archive)": f"{len(dup_ch)} / {len(dup_archive)}",
        "ClickHouse rows / archive rows": f"{sum(loaded.values())} / {sum(archived.values())}",
        "answered 503 but sunk anyway (stored or delivered late)": len(refused_but_sunk),
        "resent copies the archivers dropped": stack.archive_duplicates_dropped(),
        "peak gateway RSS MiB": {k: round(v) for k, v in rss.peak_mib.items()},
    })
    assert load.skipped == 0, f"the client fell behind its schedule {load.skipped} times"
    assert len(acked) > STOP_S * RATE * 0.5, f"too little load got through: {dict(load.statuses)}"
    # Drained can exceed stored: a write that outlived its request's timeout (a 503) may land and is drained.
    assert stored > 0 and drained >= stored, (stored, drained)
    assert not store.pending(), "the fallback store did not drain"
    assert not lost_ch and not lost_archive, f"lost {len(lost_ch)} in ClickHouse, {len(lost_archive)} in the archive"
    assert not dup_ch, f"{len(dup_ch)} ids twice in ClickHouse, e.g. {sorted(dup_ch)[:3]}"
    assert not dup_archive, f"{len(dup_archive)} ids more than once in the archive, e.g. {sorted(dup_archive)[:3]}"
    assert set(loaded) - acked <= load.refused, "ClickHouse holds ids the client never sent"
    over = {k: v for k, v in rss.peak_mib.items() if v > GATEWAY_RSS_BOUND_MIB}
    assert not over, f"gateway over {GATEWAY_RSS_BOUND_MIB:.0f} MiB: {over}"


"""The overflow lane end to end: one user sends 90 % of a steady load through the whole local stack
(gateway, broker, archiver, loader, ClickHouse). Its events over the per-key rate go to the overflow
topic; every event is loaded and archived exactly once, and the overflow lane's files sit in the main
topic's archive folder (per-key order under the rate: tests/gateway/test_overflow.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from bench.harness import API_KEY, Pipeline

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(600)]

HOT_SHARE = 0.9
RATE = 1_000  # events/s offered
SECONDS = 10
BATCH = 50
OVERFLOW_ENV = {"GATEWAY_OVERFLOW_KEY_EVENTS_PER_S": "100", "GATEWAY_OVERFLOW_KEY_BURST": "200",
                "CONSUMER_BATCH_MAX_AGE_S": "1"}


def _batch(n: int) -> list[dict[str, object]]:
    hot = int(BATCH * HOT_SHARE)
    return [{"type": "overflow_test", "event_id": str(uuid.uuid4()),
             "user_id": "hot" if i < hot else f"calm-{n % 40}-{i}"} for i in range(BATCH)]


def _offer(port: int) -> set[str]:
    """RATE events/s for SECONDS in batches of BATCH; returns the ids answered 2xx (all must be)."""
    acked: set[str] = set()
    interval = BATCH / RATE
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=30) as client:
        start = time.monotonic()
        for n in range(int(RATE * SECONDS / BATCH)):
            time.sleep(max(0.0, start + n * interval - time.monotonic()))
            batch = _batch(n)
            response = client.post("/v1/events", json=batch)
            assert response.status_code == 200, response.text
            acked.update(str(e["event_id"]) for e in batch)
        metrics = client.get("/metrics").text
    overflowed = [line for line in metrics.splitlines() if line.startswith("evpipe_gateway_overflow_events_total")]
    assert overflowed and float(overflowed[0].rsplit(" ", 1)[1]) > 0.5 * len(acked), overflowed
    return acked


def test_a_hot_user_is_loaded_and_archived_exactly_once(tmp_path: Path) -> None:
    with Pipeline(tmp_path, env=OVERFLOW_ENV) as pipe:
        acked = _offer(pipe.gateway_port)
        total = len(acked) + pipe.warm
        loaded, archived, _ = pipe.drain(total, max_s=180)
        assert (loaded, archived) == (total, total)
        assert pipe.loaded() == (total, total)  # rows = distinct ids: none twice
        assert pipe.archived_distinct() == total
        ids = {row[0] for row in pipe.query("SELECT toString(event_id) FROM events WHERE type = 'overflow_test'")}
        assert ids == acked
        lanes = {f.name.split("-")[0] for f in pipe.archive_files()}
        assert lanes == {"events", "events.overflow"}  # both lanes' files, in one folder: one dataset to read
        assert {f.relative_to(pipe.state / "archive").parts[0] for f in pipe.archive_files()} == {"topic=events"}

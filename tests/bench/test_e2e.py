"""A short end-to-end measurement on a private pipeline: every accepted event archived and loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.e2e import measure
from bench.harness import Pipeline


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_measure_counts_accepted_archived_loaded(tmp_path: Path) -> None:
    with Pipeline(tmp_path) as pipe:
        m = measure(pipe, rate=2_000, seconds=3.0)
        pids = pipe.pids()
    assert m["non_2xx"] == 0 and m["errors"] == 0
    assert m["accepted"] > 0
    assert m["accepted"] == m["archived"] == m["loaded"]
    assert m["duplicates"] == 0
    assert m["markers_seen"] > 0 and m["markers_missing"] == 0
    assert m["p50_ms"] <= m["p99_ms"]
    assert {"clickhouse", "gateway", "archiver", "loader", "broker", "loadgen"} <= set(m["processes"])
    assert set(pids) == {"clickhouse", "gateway", "archiver", "loader", "broker"}
    cost = m["core_s_per_million"]  # every process counted; the pipeline's and the servers' sums apart
    assert set(pids) | {"pipeline", "servers"} == set(cost)
    assert cost["pipeline"] == pytest.approx(cost["gateway"] + cost["archiver"] + cost["loader"], abs=0.05)
    assert cost["pipeline"] > 0 and cost["servers"] > 0
    # The read-only analyst ran beside the load: it got answers, and none of its INSERTs went in.
    assert m["analyst"]["answered"] > 0 and m["analyst"]["failed"] == 0
    assert m["analyst"]["insert_refused_164"] > 0 and m["analyst"]["insert_went_through"] == 0

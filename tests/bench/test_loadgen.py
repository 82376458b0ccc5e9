"""The load generator holds its schedule, reports markers, and its numbers add up."""

from __future__ import annotations

import multiprocessing as mp

import orjson

from bench import loadgen


def test_generator_sends_the_scheduled_slots_and_reports_markers() -> None:
    sink, port = loadgen.start_sink(batch=100)
    markers = mp.get_context("spawn").Queue()
    try:
        # 5,000 events/s in batches of 100 over 2 processes: one request per 40 ms per process, 50 each in 2 s.
        spec = loadgen.LoadSpec("127.0.0.1", port, "k", rate=5_000, seconds=2.0, batch=100, processes=2,
                                connections=4, marker_every_s=0.5)
        result = loadgen.generate(spec, markers)
    finally:
        sink.kill()
        sink.join(5)
    assert result.non_2xx == 0 and result.errors == 0
    # Never more than the schedule; the last slot of a process may fall past the clock check.
    assert 96 <= result.requests <= 100
    assert result.accepted == result.requests * 100
    assert sum(result.per_second) == result.accepted
    seen = []
    while not markers.empty():
        seen.append(markers.get())
    assert 2 <= len(seen) <= 12 and len({m for m, _ in seen}) == len(seen)


def test_marker_body_is_the_batch_plus_one_event_with_the_marker_id() -> None:
    body = loadgen.bodies(3, salt=0)[0]
    events = orjson.loads(loadgen.with_marker(body, "0f0e0d0c-0000-4000-8000-000000000001"))
    assert len(events) == 4 and events[:3] == orjson.loads(body)
    assert events[3]["event_id"] == "0f0e0d0c-0000-4000-8000-000000000001"


def test_ceiling_measures_a_positive_rate() -> None:
    assert loadgen.ceiling(seconds=1.0, batch=100, processes=1, connections=2) > 0

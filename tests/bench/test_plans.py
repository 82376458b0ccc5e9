"""The plans benchmark's plan and events: 20 types of 5-15 properties, valid events pass, broken ones are refused."""

from __future__ import annotations

import orjson

from bench.plans import TYPES, per_event_us, planned_event, realistic_plan
from evpipe.plans.check import SourceCheck
from evpipe.plans.model import parse_plan


def test_the_plan_is_realistic_and_its_events_are_judged_as_meant() -> None:
    document = realistic_plan()
    sizes = [len(e["properties"]["properties"]) for e in document["events"].values()]
    assert len(sizes) == TYPES and min(sizes) == 5 and max(sizes) == 15
    plan = SourceCheck(parse_plan(document, "bench.yaml"))
    for n in range(TYPES):
        good, bad = planned_event(n), planned_event(n, broken=True)
        assert plan.check(good["type"], orjson.dumps(good["properties"]).decode(), "{}") is None
        verdict = plan.check(bad["type"], orjson.dumps(bad["properties"]).decode(), "{}")
        assert verdict is not None and verdict.reject


def test_per_event_cost_is_measured() -> None:
    body = orjson.dumps([planned_event(n) for n in range(100)])
    assert per_event_us(body, None, 0.05) > 0

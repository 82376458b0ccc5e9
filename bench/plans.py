"""What tracking plans cost the gateway per event: parse + validate + build, plans off against a realistic plan.

The plan: 20 event types of 5 to 15 typed properties each (strings with lengths, numbers with bounds,
integers, booleans, enums, nullable fields, an array of objects), ``additionalProperties: false`` and
``mode: enforce``. The events cycle through the 20 types and are valid, so every event is checked in full;
a third row sends one event in ten off its plan (refused with its violations listed). All three rows run in
one process, one after the other, so they share the machine's state.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from bench.report import write_result

TYPES = 20
_KINDS: tuple[tuple[dict[str, Any], Any], ...] = (
    ({"type": "string", "minLength": 1, "maxLength": 200}, "value"),
    ({"type": "number", "minimum": 0}, 19.99),
    ({"type": "integer", "minimum": 1}, 3),
    ({"type": "boolean"}, True),
    ({"type": "string", "enum": ["EUR", "USD", "GBP"]}, "EUR"),
    ({"type": ["string", "null"]}, None),
    ({"type": "array", "maxItems": 50, "items": {"type": "object", "required": ["sku", "price"],
                                                  "properties": {"sku": {"type": "string"},
                                                                 "price": {"type": "number"}}}},
     [{"sku": "a-1", "price": 10.5}, {"sku": "b-2", "price": 4.25}]),
)


def realistic_plan(source: str = "bench") -> dict[str, Any]:
    """The plan document: event type i has 5 + (i mod 11) properties, the first half of them required."""
    events = {}
    for i in range(TYPES):
        names = [f"prop_{i}_{j}" for j in range(5 + i % 11)]
        properties = {name: _KINDS[(i + j) % len(_KINDS)][0] for j, name in enumerate(names)}
        events[f"event_{i}"] = {"properties": {"type": "object", "additionalProperties": False,
                                               "required": names[: len(names) // 2], "properties": properties}}
    return {"source": source, "version": 1, "mode": "enforce", "unplanned": "reject", "events": events}


def planned_event(n: int, broken: bool = False) -> dict[str, Any]:
    i = n % TYPES
    properties = {f"prop_{i}_{j}": _KINDS[(i + j) % len(_KINDS)][1] for j in range(5 + i % 11)}
    if broken:
        properties[f"prop_{i}_0"] = {"not": "this"}  # an object: no property of the plan takes one
    return {"type": f"event_{i}", "user_id": f"user-{n}", "properties": properties,
            "context": {"locale": "en-US", "library": {"name": "bench", "version": "1"}}}


def per_event_us(body: bytes, plan: Any, seconds: float) -> float:
    """Microseconds per event of parsing, validating and building 100-event bodies in this process."""
    from gateway import ingest
    from gateway.body import Limits, parse_events
    from schemas.envelope import Enrichment, EventValidator, now_timestamp

    validator, limits = EventValidator(), Limits(5 << 20, 20 << 20, 65536, 10_000)
    events, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        parsed = parse_events(body, "application/json", limits)
        ingest.build(parsed, validator, Enrichment("bench", now_timestamp(), "127.0.0.1", "b"), None, plan)
        events += len(parsed.events)
    return (time.perf_counter() - started) / events * 1e6


def run(quick: bool) -> dict[str, Any]:
    from evpipe.plans.check import SourceCheck
    from evpipe.plans.model import parse_plan

    seconds = 2.0 if quick else 6.0
    plan = SourceCheck(parse_plan(realistic_plan(), "bench.yaml"))
    valid = orjson.dumps([planned_event(n) for n in range(100)])
    mixed = orjson.dumps([planned_event(n, broken=n % 10 == 0) for n in range(100)])
    off = per_event_us(valid, None, seconds)
    enforce = per_event_us(valid, plan, seconds)
    violating = per_event_us(mixed, plan, seconds)
    rows = [
        {"path": "parse+validate, plans off", "us_per_event": off, "events_per_s": 1e6 / off},
        {"path": "parse+validate, enforce (20 types, 5-15 properties)", "us_per_event": enforce,
         "events_per_s": 1e6 / enforce},
        {"path": "enforce, 1 event in 10 refused", "us_per_event": violating, "events_per_s": 1e6 / violating},
    ]
    result = {"events_per_s": 1e6 / enforce, "baseline_events_per_s": 1e6 / off, "ratio": off / enforce,
              "plan_cost_us_per_event": enforce - off, "violating_cost_us_per_event": violating - off,
              "quick": quick, "cpus": os.cpu_count()}
    write_result("plans", result, rows)
    return result

"""Wire-format events for the stage-2 tests and benchmark, built by the real validator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from schemas.envelope import Enrichment, EventValidator, format_timestamp

_VALIDATOR = EventValidator()


def make_event(i: int, received_at: dt.datetime | None = None, source: str = "src-test") -> dict[str, Any]:
    moment = received_at or dt.datetime.now(dt.UTC)
    enrichment = Enrichment(source_id=source, received_at=format_timestamp(moment), ip="10.0.0.1", user_agent="t/1")
    raw = {"type": "page_view", "user_id": f"u{i % 977}", "properties": {"i": i, "path": f"/p/{i}"},
           "context": {"library": {"name": "t", "version": "1"}}}
    return _VALIDATOR.normalize(raw, enrichment)


def make_wire(n: int, start: int = 0) -> list[bytes]:
    """n distinct wire-format items (unique event ids)."""
    return [orjson.dumps(make_event(i)) for i in range(start, start + n)]

"""Turn parsed raw events into wire records and per-index rejections (no I/O here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from evpipe.plans.check import SourceCheck, Verdict
from gateway import segment
from gateway.backends.base import MAX_KEPT_PAYLOAD_BYTES, RawBytes, Record, Rejected
from gateway.body import ParsedBody
from schemas.envelope import Enrichment, EventValidator, InvalidEvent

# Keys a native body may carry next to its events (browser clients cannot always set headers).
WRITE_KEY_FIELDS = ("write_key", "writeKey")


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        return {"accepted": len(self.records), "rejected": [_refusal(r) for r in self.rejected]}


def _refusal(rejected: Rejected) -> dict[str, Any]:
    if rejected.violations is None:
        return {"index": rejected.index, "error": rejected.reason}
    return {"index": rejected.index, "error": rejected.reason, "violations": list(rejected.violations)}


def body_write_key(parsed: ParsedBody, segment_call: bool) -> str | None:
    """The write key a body carries: batch-level, or inside a single event (removed from it)."""
    for name in WRITE_KEY_FIELDS:
        value = parsed.envelope.get(name)
        if isinstance(value, str):
            return value
    if parsed.single and isinstance(parsed.events[0], dict):
        event = parsed.events[0]
        for name in WRITE_KEY_FIELDS:
            value = event.get(name)
            if isinstance(value, str):
                if not segment_call:  # Segment treats writeKey as a transport field; native events must not carry it
                    del event[name]
                return value
    return None


def check_native_envelope(parsed: ParsedBody) -> str | None:
    extra = [k for k in parsed.envelope if k not in WRITE_KEY_FIELDS]
    return f"unknown batch field {extra[0][:60]!r}: a batch body is {{\"batch\": [...]}}" if extra else None


def build(parsed: ParsedBody, validator: EventValidator, enrichment: Enrichment,
          to_native: Callable[[Any], Any] | None = None, plan: SourceCheck | None = None,
          observe: Callable[[Verdict], None] | None = None) -> Outcome:
    """Validate every event; invalid ones are kept with their index, reason and original payload.

    ``plan``: the source's tracking plan (``observe`` sees each event's verdict); without one the loop
    below is all there is, so a source without a plan pays nothing for plans."""
    if plan is not None:
        return _build_planned(parsed, validator, enrichment, to_native, plan, observe)
    outcome = Outcome()
    # Hoisted out of the loop: it runs once per event, and per-event overhead is the gateway's ceiling.
    encode, accept, reject, broken = validator.encode, outcome.records.append, outcome.rejected.append, parsed.broken
    for index, raw in enumerate(parsed.events):
        if broken and index in broken:  # only NDJSON bodies have broken lines: skip the lookup otherwise
            reason, line = broken[index]
            reject(broken_line(index, reason, line, enrichment))
            continue
        try:
            record = Record(*encode(to_native(raw) if to_native else raw, enrichment))
        except InvalidEvent as exc:
            reject(Rejected(index, str(exc), raw, enrichment.source_id, enrichment.received_at))
            continue
        accept(record)
    return outcome


def _build_planned(parsed: ParsedBody, validator: EventValidator, enrichment: Enrichment,
                   to_native: Callable[[Any], Any] | None, plan: SourceCheck,
                   observe: Callable[[Verdict], None] | None) -> Outcome:
    """``build`` with the source's tracking plan applied to each valid envelope."""
    outcome = Outcome()
    check, accept, reject, broken = plan.check, outcome.records.append, outcome.rejected.append, parsed.broken
    for index, raw in enumerate(parsed.events):
        if broken and index in broken:
            reason, line = broken[index]
            reject(broken_line(index, reason, line, enrichment))
            continue
        try:
            key, value, event = validator.encode(to_native(raw) if to_native else raw, enrichment)
        except InvalidEvent as exc:
            reject(Rejected(index, str(exc), raw, enrichment.source_id, enrichment.received_at))
            continue
        verdict = check(event["type"], event["properties"], event["context"])
        if verdict is not None:
            if observe is not None:
                observe(verdict)
            if verdict.reject:
                reject(Rejected(index, verdict.reason(), raw, enrichment.source_id, enrichment.received_at,
                                violations=tuple(v.document() for v in verdict.violations)))
                continue
            # Tagged: accepted, its violations on the wire event (sinks that predate the field ignore it).
            event["violations"] = verdict.texts()
            value = orjson.dumps(event)
        accept(Record(key, value, event))
    return outcome


def broken_line(index: int, reason: str, line: bytes, enrichment: Enrichment) -> Rejected:
    """An NDJSON line that is not JSON: kept as text, or as raw bytes when it is not even UTF-8."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raw = RawBytes.of([line], MAX_KEPT_PAYLOAD_BYTES)
        return Rejected(index, reason, None, enrichment.source_id, enrichment.received_at, raw)
    return Rejected(index, reason, text, enrichment.source_id, enrichment.received_at)


def segment_mapper(call: str | None, parsed: ParsedBody, source_id: str,
                   received: dt.datetime) -> Callable[[Any], Any]:
    batch = parsed.envelope

    def to_native(message: Any) -> Any:
        return segment.to_native(message, call, batch, source_id, received)

    return to_native

"""A rejected event nested deeper than orjson serialises is still kept, as JSON text."""

from __future__ import annotations

import orjson

from gateway.backends.base import Rejected, dump_deep, invalid_document


def _nested(depth: int) -> dict:  # type: ignore[type-arg]
    value: dict = {"leaf": [1, "two", None, True, 2.5]}  # type: ignore[type-arg]
    for _ in range(depth):
        value = {"a": value}
    return value


def test_dump_deep_matches_the_json_it_stands_for() -> None:
    value = {"a": [1, {"b": 'x"y', "c": []}, {}], "d": None, "é": "ü"}
    assert orjson.loads(dump_deep(value)) == value


def test_invalid_document_keeps_a_payload_too_deep_for_orjson() -> None:
    payload = _nested(600)
    document = invalid_document(Rejected(0, "properties: cannot be encoded", payload, "src", "2026-11-21T10:00:00.000Z"))
    assert isinstance(document["payload"], str)
    assert orjson.loads(document["payload"]) == payload  # orjson parses up to 1024 deep
    orjson.dumps(document)  # the stored document itself serialises

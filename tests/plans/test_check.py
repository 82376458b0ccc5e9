"""One source's plan applied to single events (no gateway): pointers, modes, context, caps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from evpipe.plans.check import SourceCheck
from evpipe.plans.model import PlanError, parse_plan
from evpipe.plans.violations import MAX_LISTED
from tests.plans.samples import ORDER_SCHEMA, plan

CART = {"type": "object", "properties": {"items": {"type": "array", "items": {
    "type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "a/b": {"type": "integer"}}}}}}


def check(document: dict[str, Any], event_type: str, properties: Any, context: Any = None) -> list[str] | None:
    verdict = SourceCheck(parse_plan(document, "p.yaml")).check(
        event_type, orjson.dumps(properties).decode(), orjson.dumps(context or {}).decode())
    return None if verdict is None else [("reject " if verdict.reject else "tag ") + t for t in verdict.texts()]


def test_pointers_into_arrays_and_escaped_names() -> None:
    document = plan(cart_viewed={"properties": CART})
    assert check(document, "cart_viewed", {"items": [{"sku": "a"}, {"a/b": 1.5}]}) == [
        "reject /properties/items/1/sku: expected a value (required), got nothing",
        "reject /properties/items/1/a~1b: expected integer, got number"]


def test_context_is_checked_when_the_plan_has_a_context_schema() -> None:
    document = plan(signup={"context": {"type": "object", "required": ["locale"]}, "mode": "tag"})
    assert check(document, "signup", {}, {"locale": "de"}) is None
    assert check(document, "signup", {}, {"ip": "1.2.3.4"}) == [
        "tag /context/locale: expected a value (required), got nothing"]


def test_off_modes_and_planned_but_unchecked_types_cost_nothing() -> None:
    assert check(plan(mode="off"), "order_completed", {"revenue": "x"}) is None
    assert check(plan(order_completed={"properties": ORDER_SCHEMA, "mode": "off"}), "order_completed", {}) is None
    assert check(plan(unplanned="reject", page_view={}), "page_view", {"anything": 1}) is None
    assert check(plan(unplanned="allow"), "refund", {}) is None


def test_the_list_is_capped() -> None:
    closed = {"type": "object", "additionalProperties": False}
    found = check(plan(noisy={"properties": closed}), "noisy", {f"p{i}": i for i in range(50)})
    assert found is not None and len(found) == MAX_LISTED


def test_an_event_type_must_be_a_string() -> None:
    with pytest.raises(PlanError, match="p.yaml: /events/404: an event type is a string"):
        parse_plan({**plan(), "events": {404: {}}}, "p.yaml")


def test_long_client_names_are_cut_in_the_violation() -> None:
    closed = {"type": "object", "additionalProperties": False}
    found = check(plan(noisy={"properties": closed}), "noisy", {"x" * 5000: 1})
    assert found is not None and len(found[0]) < 300
    assert found[0].startswith("reject /properties/xxxx") and "…: expected no such property" in found[0]


def test_formats_are_checked() -> None:
    schema = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}}
    document = plan(signup={"properties": schema})
    assert check(document, "signup", {"at": "2026-12-04T10:00:00Z"}) is None
    expected = 'reject /properties/at: expected format "date-time", got "yesterday"'
    assert check(document, "signup", {"at": "yesterday"}) == [expected]

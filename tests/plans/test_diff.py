"""`evpipe plans diff OLD NEW`: every kind of change classified, and the exit status follows the breaking ones."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evpipe.plans.diff import diff_plans
from evpipe.plans.model import parse_plan
from tests.plans.samples import plan, write

Edit = Callable[[dict[str, Any]], object]


def props(document: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = document["events"]["order_completed"]["properties"]
    return schema


def edited(edit: Edit) -> dict[str, Any]:
    document = copy.deepcopy(plan())
    edit(document)
    return document


def changes(edit: Edit) -> list[tuple[bool, str]]:
    old, new = parse_plan(plan(), "old.yaml"), parse_plan(edited(edit), "new.yaml")
    return [(c.breaking, f"{c.where}: {c.what}") for c in diff_plans(old, new)]


ADDITIVE: list[tuple[Edit, str]] = [
    (lambda d: d["events"].update(signup={"properties": {"type": "object"}}), "signup: event type added"),
    (lambda d: props(d)["properties"].update(coupon={"type": "string"}),
     "order_completed: /properties/coupon: optional property added"),
    (lambda d: props(d)["properties"]["order_id"].update(type=["string", "null"]),
     "order_completed: /properties/order_id: type widened string -> null/string"),
    (lambda d: props(d)["required"].remove("revenue"), "order_completed: /properties/revenue: no longer required"),
    (lambda d: props(d).pop("additionalProperties"), "order_completed: /properties: additionalProperties no longer false"),
    (lambda d: props(d)["properties"]["currency"].update(enum=["EUR", "USD", "GBP"]),
     "order_completed: /properties/currency: enum values added ['GBP']"),
    (lambda d: props(d)["properties"]["revenue"].pop("minimum"),
     "order_completed: /properties/revenue: minimum 0 removed"),
    (lambda d: d.update(mode="tag"), "plan: mode enforce -> tag"),
    (lambda d: props(d).update(description="what an order says"), ""),
]

BREAKING: list[tuple[Edit, str]] = [
    (lambda d: d["events"].clear(), "order_completed: event type removed"),
    (lambda d: props(d)["properties"].pop("currency"), "order_completed: /properties/currency: property removed"),
    (lambda d: props(d)["properties"]["revenue"].update(type="integer"),
     "order_completed: /properties/revenue: type narrowed number -> integer"),
    (lambda d: props(d)["properties"]["order_id"].update(type="integer"),
     "order_completed: /properties/order_id: type changed string -> integer"),
    (lambda d: (props(d)["properties"].update(coupon={"type": "string"}), props(d)["required"].append("coupon")),
     "order_completed: /properties/coupon: required property added"),
    (lambda d: props(d)["required"].append("currency"), "order_completed: /properties/currency: now required"),
    (lambda d: props(d)["properties"]["currency"].update(enum=["EUR"]),
     "order_completed: /properties/currency: enum values removed ['USD']"),
    (lambda d: props(d)["properties"]["revenue"].update(minimum=1),
     "order_completed: /properties/revenue: minimum 0 -> 1"),
    (lambda d: props(d)["properties"]["order_id"].update(maxLength=10),
     "order_completed: /properties/order_id: maxLength 10 added"),
    (lambda d: props(d)["properties"]["order_id"].update(pattern="^o-"),
     "order_completed: /properties/order_id: pattern changed (unclassified, so taken as breaking)"),
    (lambda d: d.update(unplanned="reject"), "plan: unplanned allow -> reject"),
]


@pytest.mark.parametrize(("edit", "expected"), ADDITIVE)
def test_additive_changes(edit: Edit, expected: str) -> None:
    assert changes(edit) == ([(False, expected)] if expected else [])


@pytest.mark.parametrize(("edit", "expected"), BREAKING)
def test_breaking_changes(edit: Edit, expected: str) -> None:
    assert changes(edit) == [(True, expected)]


def test_closing_additional_properties_is_breaking() -> None:
    old = parse_plan(edited(lambda d: props(d).pop("additionalProperties")), "old.yaml")
    new = parse_plan(plan(), "new.yaml")
    assert [(c.breaking, c.what) for c in diff_plans(old, new)] == [
        (True, "/properties: additionalProperties now false (unnamed properties refused)")]


def test_a_stricter_event_mode_is_breaking() -> None:
    old = parse_plan(plan(mode="tag"), "old.yaml")
    new = parse_plan(edited(lambda d: d.update(mode="tag") or d["events"]["order_completed"].update(mode="enforce")),
                     "new.yaml")
    assert [c.text() for c in diff_plans(old, new)] == ["breaking  order_completed: mode tag -> enforce"]
    assert [c.text() for c in diff_plans(new, old)] == ["additive  order_completed: mode enforce -> tag"]


def test_nested_array_items_are_compared() -> None:
    def with_items(item_type: str) -> Edit:
        return lambda d: props(d)["properties"].update(
            products={"type": "array", "items": {"type": "object", "properties": {"qty": {"type": item_type}}}})

    old, new = parse_plan(edited(with_items("number")), "o"), parse_plan(edited(with_items("integer")), "n")
    assert [c.text() for c in diff_plans(old, new)] == [
        "breaking  order_completed: /properties/products/items/qty: type narrowed number -> integer"]


def run_diff(tmp_path: Path, new: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    write(tmp_path, "old.yaml", plan())
    write(tmp_path, "new.yaml", new)
    return subprocess.run([sys.executable, "-m", "evpipe", "plans", "diff", str(tmp_path / "old.yaml"),
                           str(tmp_path / "new.yaml")], capture_output=True, text=True, timeout=60)


def test_the_command_exits_non_zero_only_on_breaking_changes(tmp_path: Path) -> None:
    additive = run_diff(tmp_path, edited(ADDITIVE[1][0]))
    assert additive.returncode == 0
    assert additive.stdout.splitlines() == [
        "additive  order_completed: /properties/coupon: optional property added", "1 change(s): 1 additive, 0 breaking"]
    breaking = run_diff(tmp_path, edited(lambda d: (ADDITIVE[1][0](d), BREAKING[1][0](d))))
    assert breaking.returncode == 1
    assert breaking.stdout.splitlines()[-1] == "2 change(s): 1 additive, 1 breaking"
    unreadable = subprocess.run([sys.executable, "-m", "evpipe", "plans", "diff", str(tmp_path / "nope.yaml"),
                                 str(tmp_path / "new.yaml")], capture_output=True, text=True, timeout=60)
    assert unreadable.returncode == 2
    assert "nope.yaml: /: no such file" in unreadable.stderr and "Traceback" not in unreadable.stderr

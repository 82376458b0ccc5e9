"""Two versions of one plan compared: every change classified as additive or breaking.

Breaking means an event that the old plan accepted may be refused (or tagged) under the new one, or a
field analysts read may disappear: a removed event type or property, a narrowed type, a new required
property, a tightened bound or enum, additionalProperties turned false, a stricter mode. A change this
module cannot classify is called breaking: a wrong "additive" would let a breaking change through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evpipe.plans.model import Mode, Plan, Unplanned, escape

_MODE_STRICTNESS = {Mode.OFF: 0, Mode.TAG: 1, Mode.ENFORCE: 2}
_UNPLANNED_STRICTNESS = {Unplanned.ALLOW: 0, Unplanned.TAG: 1, Unplanned.REJECT: 2}
# Bounds: a larger minimum, or a smaller maximum, accepts fewer values.
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
# Keywords walked or compared on their own below; any other keyword that changed is unclassified.
_HANDLED = frozenset({"type", "properties", "required", "additionalProperties", "enum", "items",
                      "description", "title", "examples", "$comment", *_LOWER_BOUNDS, *_UPPER_BOUNDS})


@dataclass(frozen=True)
class Change:
    where: str  # event type and JSON pointer into its schemas, or "plan"
    what: str
    breaking: bool

    def text(self) -> str:
        return f"{'breaking' if self.breaking else 'additive'}  {self.where}: {self.what}"


def diff_plans(old: Plan, new: Plan) -> list[Change]:
    changes = _plan_level(old, new)
    for name in sorted(old.events.keys() | new.events.keys()):
        if name not in new.events:
            changes.append(Change(name, "event type removed", True))
        elif name not in old.events:
            changes.append(Change(name, "event type added", False))
        else:
            before, after = old.events[name], new.events[name]
            if before.mode is not old.mode or after.mode is not new.mode:  # not just the plan's mode inherited
                changes += _ordered(name, "mode", _MODE_STRICTNESS, before.mode, after.mode)
            changes += diff_schema(before.properties, after.properties, name, "/properties")
            changes += diff_schema(before.context, after.context, name, "/context")
    return changes


def _plan_level(old: Plan, new: Plan) -> list[Change]:
    changes: list[Change] = []
    if old.source != new.source:
        changes.append(Change("plan", f"source changed from {old.source!r} to {new.source!r}", True))
    changes += _ordered("plan", "mode", _MODE_STRICTNESS, old.mode, new.mode)
    changes += _ordered("plan", "unplanned", _UNPLANNED_STRICTNESS, old.unplanned, new.unplanned)
    return changes


def _ordered(where: str, name: str, strictness: dict[Any, int], old: Any, new: Any) -> list[Change]:
    if old == new:
        return []
    return [Change(where, f"{name} {old.value} -> {new.value}", strictness[new] > strictness[old])]


def diff_schema(old: Any, new: Any, event: str, at: str) -> list[Change]:
    """The changes from schema ``old`` to ``new`` (None: not checked, which accepts anything)."""
    old, new = _as_schema(old), _as_schema(new)
    if old == new:
        return []
    changes = _types(old, new, event, at) + _object(old, new, event, at) + _bounds(old, new, event, at)
    changes += _enum(old, new, event, at)
    changes += diff_schema(old.get("items"), new.get("items"), event, f"{at}/items")
    for keyword in sorted((old.keys() | new.keys()) - _HANDLED):
        if old.get(keyword) != new.get(keyword):
            changes.append(Change(event, f"{at}: {keyword} changed (unclassified, so taken as breaking)", True))
    return changes


def _as_schema(schema: Any) -> dict[str, Any]:
    if schema is None or schema is True:
        return {}
    if schema is False:
        return {"not": {}}
    return dict(schema)


def _types(old: dict[str, Any], new: dict[str, Any], event: str, at: str) -> list[Change]:
    before, after = _type_set(old.get("type")), _type_set(new.get("type"))
    if before == after:
        return []
    names = f"{'/'.join(sorted(before)) or 'any'} -> {'/'.join(sorted(after)) or 'any'}"
    if _covers(after, before):
        return [Change(event, f"{at}: type widened {names}", False)]
    if _covers(before, after):
        return [Change(event, f"{at}: type narrowed {names}", True)]
    return [Change(event, f"{at}: type changed {names}", True)]


def _type_set(value: Any) -> frozenset[str]:
    """Empty: any type."""
    if value is None:
        return frozenset()
    return frozenset([value] if isinstance(value, str) else value)


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    if not wide:
        return True
    if not narrow:
        return False
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _object(old: dict[str, Any], new: dict[str, Any], event: str, at: str) -> list[Change]:
    changes: list[Change] = []
    before, after = old.get("properties") or {}, new.get("properties") or {}
    required_before, required_after = set(old.get("required") or ()), set(new.get("required") or ())
    for name in sorted(before.keys() | after.keys()):
        where = f"{at}/{escape(name)}"
        if name not in after:
            changes.append(Change(event, f"{where}: property removed", True))
        elif name not in before:
            required = name in required_after
            changes.append(Change(event, f"{where}: {'required' if required else 'optional'} property added",
                                  required))
        else:
            changes += diff_schema(before[name], after[name], event, where)
    for name in sorted(required_after - required_before):
        if name in before or name not in after:  # a new property's requiredness is told above
            changes.append(Change(event, f"{at}/{escape(name)}: now required", True))
    for name in sorted(required_before - required_after):
        changes.append(Change(event, f"{at}/{escape(name)}: no longer required", False))
    changes += _additional(old.get("additionalProperties"), new.get("additionalProperties"), event, at)
    return changes


def _additional(old: Any, new: Any, event: str, at: str) -> list[Change]:
    closed_before, closed_after = old is False, new is False
    if closed_before == closed_after:
        return [] if closed_before or old == new else [
            Change(event, f"{at}: additionalProperties changed (unclassified, so taken as breaking)", True)]
    if closed_after:
        return [Change(event, f"{at}: additionalProperties now false (unnamed properties refused)", True)]
    return [Change(event, f"{at}: additionalProperties no longer false", False)]


def _bounds(old: dict[str, Any], new: dict[str, Any], event: str, at: str) -> list[Change]:
    changes: list[Change] = []
    for keyword in (*_LOWER_BOUNDS, *_UPPER_BOUNDS):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            changes.append(Change(event, f"{at}: {keyword} {before} removed", False))
        elif before is None:
            changes.append(Change(event, f"{at}: {keyword} {after} added", True))
        else:
            tighter = after > before if keyword in _LOWER_BOUNDS else after < before
            changes.append(Change(event, f"{at}: {keyword} {before} -> {after}", tighter))
    return changes


def _enum(old: dict[str, Any], new: dict[str, Any], event: str, at: str) -> list[Change]:
    before, after = old.get("enum"), new.get("enum")
    if before == after:
        return []
    if after is None:
        return [Change(event, f"{at}: enum removed", False)]
    if before is None:
        return [Change(event, f"{at}: enum added", True)]
    removed = [v for v in before if v not in after]
    added = [v for v in after if v not in before]
    changes = [Change(event, f"{at}: enum values removed {removed}", True)] if removed else []
    return changes + ([Change(event, f"{at}: enum values added {added}", False)] if added else [])

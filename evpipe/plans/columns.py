"""Which typed columns (``p_<property>``, schemas/typed.py) a set of tracking plans asks for.

Every property a plan's ``properties`` schema names at its top level with one scalar JSON Schema type
(``string``, ``number``, ``integer``, ``boolean``; ``[number, "null"]`` counts as ``number``) gets a
column. Columns are shared by all sources and event types, since they live in the one events table;
where plans disagree on a property's type:

* ``integer`` and ``number``: ``number`` (every integer is a number; the column holds both);
* any other mix (``string`` in one plan, ``number`` in another): the first plan's type, in the order of
  source_id and then of the event types in its file, and the disagreement is reported;
* two properties whose sanitized names meet (``order-id`` and ``order_id``): the one first in that order.

A sink keeps a column once it has it (evolution is additive): see the loader and the archiver for what
each does when a later plan says another type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evpipe.plans.model import Plan
from schemas.typed import Scalar, TypedColumn, column_name

_SCALARS = {s.value: s for s in Scalar}


@dataclass(frozen=True)
class PlannedColumns:
    columns: tuple[TypedColumn, ...] = ()
    conflicts: tuple[str, ...] = field(default=())  # what was left out or overruled, for the log


def planned_columns(plans: Iterable[Plan]) -> PlannedColumns:
    """The typed columns of these plans, in a stable order (by source, then as the files list them)."""
    chosen: dict[str, TypedColumn] = {}
    conflicts: list[str] = []
    for plan in sorted(plans, key=lambda p: p.source):
        for event_type, event in plan.events.items():
            for prop, scalar in scalar_properties(event.properties).items():
                where = f"{plan.source}/{event_type}"
                _choose(chosen, TypedColumn(column_name(prop), prop, scalar), where, conflicts)
    return PlannedColumns(tuple(chosen.values()), tuple(conflicts))


def _choose(chosen: dict[str, TypedColumn], column: TypedColumn, where: str, conflicts: list[str]) -> None:
    held = chosen.get(column.name)
    if held is None:
        chosen[column.name] = column
    elif held.key != column.key:
        conflicts.append(f"{where}: property {column.key!r} has no column: {column.name} is {held.key!r}'s")
    elif {held.scalar, column.scalar} == {Scalar.INTEGER, Scalar.NUMBER}:
        chosen[column.name] = TypedColumn(held.name, held.key, Scalar.NUMBER)
    elif held.scalar is not column.scalar:
        conflicts.append(f"{where}: property {column.key!r} is {column.scalar.value} there, "
                         f"{column.name} stays {held.scalar.value} (an earlier plan's type)")


def scalar_properties(schema: Any) -> dict[str, Scalar]:
    """The top-level properties of an object schema that have one scalar type."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    found = {}
    for prop, spec in schema["properties"].items():
        scalar = _scalar(spec.get("type") if isinstance(spec, dict) else None)
        if scalar is not None and isinstance(prop, str):
            found[prop] = scalar
    return found


def _scalar(declared: Any) -> Scalar | None:
    if isinstance(declared, list):  # ["number", "null"]: nullable, still one type
        kinds = {kind for kind in declared if kind != "null"}
        if kinds == {"integer", "number"}:
            return Scalar.NUMBER
        declared = kinds.pop() if len(kinds) == 1 else None
    return _SCALARS.get(declared) if isinstance(declared, str) else None

"""What a tracking plan file says, checked and compiled: one source's event types and their schemas.

A plan file (YAML or JSON) holds one source's plan::

    source: web                 # the source_id its events carry
    version: 3                  # an integer, raised on every change
    mode: enforce               # enforce | tag | off (each event type may override it)
    unplanned: reject           # events of a type the plan does not name: allow | tag | reject
    events:
      order_completed:
        properties: {JSON Schema}
        context: {JSON Schema}  # optional

Schemas are compiled here, once, when the plan is loaded: the gateway only runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import jsonschema_rs


class Mode(Enum):
    ENFORCE = "enforce"  # a violating event is refused and kept in the invalid store
    TAG = "tag"  # a violating event is accepted with its violations on the wire event
    OFF = "off"  # not checked


class Unplanned(Enum):
    ALLOW = "allow"
    TAG = "tag"
    REJECT = "reject"


class PlanError(ValueError):
    """A plan that cannot be used; the message names the file and the JSON pointer of the problem."""

    def __init__(self, file: str, pointer: str, problem: str) -> None:
        super().__init__(f"{file}: {pointer or '/'}: {problem}")
        self.file, self.pointer, self.problem = file, pointer, problem


@dataclass(frozen=True)
class EventPlan:
    """One event type's schemas, compiled (None: that part of the event is not checked)."""

    type: str
    mode: Mode
    properties: Any  # the JSON Schema as written: what `plans diff` compares
    context: Any
    properties_validator: jsonschema_rs.Validator | None
    context_validator: jsonschema_rs.Validator | None


@dataclass(frozen=True)
class Plan:
    source: str
    version: int
    mode: Mode
    unplanned: Unplanned
    events: dict[str, EventPlan]
    file: str


_TOP_KEYS = frozenset({"source", "version", "mode", "unplanned", "events", "description"})
_EVENT_KEYS = frozenset({"properties", "context", "mode", "description"})


def parse_plan(document: Any, file: str) -> Plan:
    """Check one plan file's document and compile its schemas; raises PlanError at the first problem."""
    if not isinstance(document, dict):
        raise PlanError(file, "", "a plan is an object with source, version and events")
    _no_unknown_keys(document, _TOP_KEYS, file, "")
    source = _required(document, "source", str, file, "")
    version = _required(document, "version", int, file, "")
    if isinstance(version, bool) or version < 1:
        raise PlanError(file, "/version", "expected an integer of 1 or more")
    mode = _enum(Mode, document.get("mode", "enforce"), file, "/mode")
    unplanned = _enum(Unplanned, document.get("unplanned", "allow"), file, "/unplanned")
    events = _required(document, "events", dict, file, "")
    plans = {name: _event_plan(name, spec, mode, file) for name, spec in events.items()}
    return Plan(source, version, mode, unplanned, plans, file)


def _event_plan(name: Any, spec: Any, default_mode: Mode, file: str) -> EventPlan:
    pointer = f"/events/{escape(str(name))}"
    if not isinstance(name, str):  # YAML reads `404:` as a number; event types are text
        raise PlanError(file, pointer, "an event type is a string: quote it")
    if not isinstance(spec, dict):
        raise PlanError(file, pointer, "expected an object with properties (and optionally context, mode)")
    _no_unknown_keys(spec, _EVENT_KEYS, file, pointer)
    mode = _enum(Mode, spec.get("mode", default_mode.value), file, f"{pointer}/mode")
    properties, context = spec.get("properties"), spec.get("context")
    return EventPlan(name, mode, properties, context, compile_schema(properties, file, f"{pointer}/properties"),
                     compile_schema(context, file, f"{pointer}/context"))


def compile_schema(schema: Any, file: str, pointer: str) -> jsonschema_rs.Validator | None:
    """The schema compiled, after checking it against its meta-schema (draft 2020-12 unless it says)."""
    if schema is None:
        return None
    if not isinstance(schema, (dict, bool)):
        raise PlanError(file, pointer, "expected a JSON Schema (an object)")
    try:
        # Formats checked whatever the draft: a plan that says date-time or email means it (2020-12 alone
        # would take `format` as an annotation and accept anything).
        return jsonschema_rs.validator_for(_name_unexpected(schema), validate_formats=True)
    except jsonschema_rs.ValidationError as exc:
        where = pointer + "".join(f"/{escape(str(part))}" for part in exc.instance_path)
        raise PlanError(file, where, f"not a valid JSON Schema: {exc.message}") from None
    except ValueError as exc:  # an unresolvable $ref, a bad regex
        raise PlanError(file, pointer, f"not a usable JSON Schema: {exc}") from None


_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})  # their values are data, not schemas


def _name_unexpected(schema: Any) -> Any:
    """The same schema, with ``properties: {}`` next to each ``additionalProperties: false`` that has none.

    jsonschema-rs reports such an object's unexpected properties as one error without their names; with an
    (empty) ``properties`` it names each, which is what a violation's pointer needs."""
    if isinstance(schema, list):
        return [_name_unexpected(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: value if key in _DATA_KEYWORDS else _name_unexpected(value) for key, value in schema.items()}
    if copy.get("additionalProperties") is False and "properties" not in copy:
        copy["properties"] = {}
    return copy


def escape(token: str) -> str:
    """One JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _required(document: dict[str, Any], key: str, kind: type, file: str, pointer: str) -> Any:
    if key not in document:
        raise PlanError(file, pointer, f"{key!r} is required")
    value = document[key]
    if not isinstance(value, kind):
        raise PlanError(file, f"{pointer}/{key}", f"expected {_KIND_NAMES[kind]}")
    return value


def _enum(kind: type[Mode | Unplanned], value: Any, file: str, pointer: str) -> Any:
    if value is False:  # YAML 1.1 reads an unquoted `off` as false
        value = "off"
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise PlanError(file, pointer, f"expected one of {choices}, got {value!r}") from None


def _no_unknown_keys(document: dict[str, Any], known: frozenset[str], file: str, pointer: str) -> None:
    for key in document:
        if key not in known:
            raise PlanError(file, f"{pointer}/{escape(str(key))}", f"unknown key (expected {', '.join(sorted(known))})")


_KIND_NAMES: dict[type, str] = {str: "a string", int: "an integer", dict: "an object"}

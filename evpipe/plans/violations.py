"""A schema error as the client and the analyst read it: where (a JSON pointer), what was expected, what came."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

from evpipe.plans.model import escape

# A response or a wire event lists at most this many; an event off its plan in every field stays small.
MAX_LISTED = 20
_GOT_CHARS = 60


@dataclass(frozen=True, slots=True)
class Violation:
    pointer: str  # into the event: /properties/revenue, /context/locale, /type
    expected: str
    got: str

    def text(self) -> str:
        return f"{self.pointer}: expected {self.expected}, got {self.got}"

    def document(self) -> dict[str, str]:
        return {"pointer": self.pointer, "expected": self.expected, "got": self.got}


def violations_of(validator: jsonschema_rs.Validator, schema: Any, instance: Any, base: str) -> list[Violation]:
    """Every violation of ``instance`` (the event's ``base`` part: /properties or /context), up to MAX_LISTED."""
    found: list[Violation] = []
    for error in validator.iter_errors(instance):
        at = base + "".join(f"/{escape(str(p))}" for p in error.instance_path)
        found.extend(Violation(_cap(v.pointer), _cap(v.expected), v.got) for v in _from_error(error, schema, at))
        if len(found) >= MAX_LISTED:
            return found[:MAX_LISTED]
    return found


def _from_error(error: jsonschema_rs.ValidationError, schema: Any, at: str) -> Iterator[Violation]:
    kind, detail = error.kind.name, error.kind.as_dict()
    if kind == "required":
        yield Violation(f"{at}/{escape(str(detail['property']))}", "a value (required)", "nothing")
    elif kind == "additionalProperties":
        instance = error.instance if isinstance(error.instance, dict) else {}
        for name in detail.get("unexpected", ()):
            yield Violation(f"{at}/{escape(name)}", "no such property (additionalProperties: false)",
                            json_type(instance.get(name)))
    elif kind == "falseSchema":
        yield Violation(at, "no value here (the schema is false)", json_type(error.instance))
    elif kind == "type":
        yield Violation(at, _expected_type(error, schema), json_type(error.instance))
    else:
        yield Violation(at, _expected_keyword(error, schema), short(error.instance))


def _expected_type(error: jsonschema_rs.ValidationError, schema: Any) -> str:
    written = _at_path(schema, error.schema_path)
    types = written if isinstance(written, list) else [written] if isinstance(written, str) else \
        error.kind.as_dict().get("types", [])
    return " or ".join(str(t) for t in types)


def _expected_keyword(error: jsonschema_rs.ValidationError, schema: Any) -> str:
    keyword = str(error.schema_path[-1]) if error.schema_path else error.kind.name
    written = _at_path(schema, error.schema_path)
    if written is _MISSING:  # behind a $ref: the validator's own words
        return error.message
    return f"{keyword} {short(written)}"


_MISSING = object()
# Pointers name client-chosen properties and schemas may hold long enums: each part of a violation stays
# short, so a tagged event stays near its size and a refusal's reason stays readable.
_PART_CHARS = 200


def _cap(text: str) -> str:
    return text if len(text) <= _PART_CHARS else text[:_PART_CHARS - 1] + "…"


def _at_path(schema: Any, path: list[str | int]) -> Any:
    node = schema
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def short(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _GOT_CHARS else text[:_GOT_CHARS - 1] + "…"


_TYPE_NAMES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string",
                                type(None): "null", list: "array", dict: "object"}


def json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), "number")

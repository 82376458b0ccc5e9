"""Validate client events into the canonical envelope and encode it for the wire.

The wire format (the Kafka message value, the Redis list item) is one JSON
object per event with every field of ``FIELDS`` present, in order:

* timestamps are ISO 8601 UTC strings with milliseconds: ``2026-11-21T03:55:10.123Z``;
* ``properties`` and ``context`` are carried as JSON *text* (a string holding a
  JSON object). Every sink stores them verbatim as a string column, so
  consumers can parse a whole batch vectorised (``pyarrow.json``, ClickHouse
  ``JSONEachRow``) without building one Python dict per event;
* absent optional fields are ``null``.

The Kafka key is ``source_id:user_id`` (or ``source_id:anonymous_id`` when
there is no user id), so one user's events stay ordered on one partition.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from uuid_utils import uuid7

from schemas import jsontext
from schemas.fields import FIELDS, IDENTITY_FIELDS, SCHEMA_VERSION, Field, Kind, Origin

DEFAULT_MAX_EVENT_BYTES = 64 * 1024
_MIN_TS = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_TS = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
# Client values already in wire form come out unchanged: a regex recognises them for a tenth of
# the cost of a parse + format round trip. Anything else takes the general (slow) path.
_WIRE_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_HYPHENATED_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class InvalidEvent(ValueError):
    """An event that cannot be accepted; the message is the reason shown to the client."""


@dataclass(frozen=True)
class Enrichment:
    """What the gateway knows about a request and stamps on each of its events."""

    source_id: str
    received_at: str
    ip: str | None = None
    user_agent: str | None = None


# A compiled field check: (present client value, enrichment) -> wire value; raises InvalidEvent.
Check = Callable[[object, Enrichment], object]
# A value made from the request alone (a gateway value, or a default for an absent field).
Default = Callable[[Enrichment], object]


def format_timestamp(moment: dt.datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z: the one timestamp form on the wire."""
    utc = moment.astimezone(dt.UTC)
    if utc.year < 1000:  # strftime's %Y does not zero-pad these (year 1 is "1"): keep that exact text
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    # Same text as strftime for 4-digit years at a third of the cost (an f-string with specs is slower still).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond // 1000)


def now_timestamp() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


def parse_timestamp(value: object, name: str) -> str:
    """Accept ISO 8601 (any offset; naive means UTC) or epoch milliseconds."""
    if isinstance(value, str) and _is_wire_timestamp(value):
        return value
    if isinstance(value, bool):
        raise InvalidEvent(f"{name}: expected an ISO 8601 string or epoch milliseconds")
    if isinstance(value, jsontext.Fragment):  # a non-integer number as the client wrote it
        value = jsontext.number_value(value)
    if isinstance(value, (int, float)):
        try:
            moment = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidEvent(f"{name}: epoch milliseconds out of range") from None
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"{name}: not an ISO 8601 timestamp: {value[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        raise InvalidEvent(f"{name}: expected an ISO 8601 string or epoch milliseconds")
    if not _MIN_TS <= moment < _MAX_TS:
        raise InvalidEvent(f"{name}: outside 1970-01-01..2200-01-01")
    return format_timestamp(moment)


def _is_wire_timestamp(value: str) -> bool:
    """True when ``value`` is a valid, in-range timestamp already in wire form (so it is its own output)."""
    # With the regex's 4-digit year, comparing whole strings compares years: 1970 <= year < 2200.
    if not ("1970" <= value < "2200" and _WIRE_TIMESTAMP.fullmatch(value)):
        return False
    try:
        dt.datetime.fromisoformat(value)  # rejects what the regex lets through: Feb 30, 25:00, ...
    except ValueError:
        return False
    return True


def canonical_uuid(value: str, name: str) -> str:
    """``value`` as ``str(uuid.UUID(value))`` would give it: lowercase, hyphenated."""
    if _HYPHENATED_UUID.fullmatch(value):
        return value.lower()  # the common form; uuid.UUID would cost ~10x more for the same text
    try:
        return str(uuid.UUID(value))  # braces, urn:uuid:, no hyphens, ...
    except ValueError:
        raise InvalidEvent(f"{name}: not a UUID: {value[:40]!r}") from None


def is_uuid(value: str) -> bool:
    """Whether ``uuid.UUID`` accepts ``value`` (fast for the usual hyphenated form)."""
    if _HYPHENATED_UUID.fullmatch(value):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def kafka_key(event: dict[str, Any]) -> bytes:
    return f"{event['source_id']}:{_identity(event) or ''}".encode()


def _identity(event: dict[str, Any]) -> Any:
    """The value that keys the event: the first non-empty one of IDENTITY_FIELDS, else None."""
    for name in IDENTITY_FIELDS:
        value = event.get(name)
        if value:
            return value
    return None


def decode(value: bytes) -> dict[str, Any]:
    """Parse one wire-format message (no validation: consumers trust the gateway)."""
    event: dict[str, Any] = orjson.loads(value)
    return event


class EventValidator:
    """Turns one client event (a parsed JSON object) into a wire-format envelope.

    Built from ``FIELDS``: a client may set the fields whose origin allows it,
    any other key is rejected by name (nothing is silently dropped).

    Per-event cost is what the gateway's throughput hangs on, so the work is
    split by how often it changes. Each field is compiled once into a check with
    its name and limits bound (no dispatch on kind or origin per event). What is
    the same for every event of a request (gateway values, defaults, the default
    context) is built once per ``Enrichment`` into a template the envelope is
    copied from, so an absent optional field costs one dict lookup.
    """

    def __init__(
        self,
        fields: tuple[Field, ...] = FIELDS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.fields = fields
        self.max_event_bytes = max_event_bytes
        self._client_names = frozenset(f.name for f in fields if f.origin is not Origin.GATEWAY)
        self._gateway_only = frozenset(f.name for f in fields if f.origin is Origin.GATEWAY)
        self._fixed: tuple[tuple[str, Default], ...] = tuple((f.name, _fixed_value(f)) for f in fields)
        # The fields the template cannot settle, in FIELDS order so the first invalid one is reported:
        # (name, check of a present value, what to do when absent; None keeps the template's value).
        self._variable: tuple[tuple[str, Check, Default | None], ...] = tuple(
            (f.name, _check(f), _missing(f)) for f in fields
            if f.origin is not Origin.GATEWAY or f.name not in _GATEWAY_VALUES)
        # The template of the last enrichment seen: a request's events all share one.
        self._last: tuple[Enrichment | None, dict[str, Any]] = (None, {})

    def normalize(self, raw: object, enrichment: Enrichment) -> dict[str, Any]:
        return self._envelope(raw, enrichment)[0]

    def encode(self, raw: object, enrichment: Enrichment) -> tuple[bytes, bytes, dict[str, Any]]:
        """Validate and serialise: returns (kafka key, wire value, envelope)."""
        event, identity = self._envelope(raw, enrichment)
        value = orjson.dumps(event)
        if len(value) > self.max_event_bytes:
            raise InvalidEvent(f"event is {len(value)} bytes, over the {self.max_event_bytes}-byte limit")
        return f"{event['source_id']}:{identity}".encode(), value, event  # = kafka_key(event)

    def _envelope(self, raw: object, enrichment: Enrichment) -> tuple[dict[str, Any], Any]:
        """The envelope and its identity (what follows the source id in the Kafka key)."""
        if not isinstance(raw, dict):
            raise InvalidEvent("event must be a JSON object")
        if not raw.keys() <= self._client_names:
            self._reject_keys(raw)
        # The template cache is checked inline (a method call per event costs ~2 % of the validator).
        # By identity: the cache holds a reference to its Enrichment, so the id cannot be reused.
        last_enrichment, template = self._last
        if last_enrichment is not enrichment:
            template = self._template(enrichment)
        event = template.copy()  # keeps FIELDS order: assignments below replace values
        get = raw.get
        for name, check, missing in self._variable:
            value = get(name)
            if value is not None:
                event[name] = check(value, enrichment)
            elif missing is not None:
                event[name] = missing(enrichment)
        for name in IDENTITY_FIELDS:  # _identity(event), inlined: this runs per event
            if identity := event.get(name):
                return event, identity
        raise InvalidEvent("one of user_id or anonymous_id is required")

    def _template(self, enrichment: Enrichment) -> dict[str, Any]:
        """Build and cache the values every event of this request shares, in FIELDS order."""
        template = {name: fixed(enrichment) for name, fixed in self._fixed}
        self._last = (enrichment, template)
        return template

    def _reject_keys(self, raw: dict[str, Any]) -> NoReturn:
        """Name the first key (in the client's order) that a client may not set."""
        for key in raw:
            if key not in self._client_names:
                if key in self._gateway_only:
                    raise InvalidEvent(f"{key}: set by the gateway, not by clients")
                raise InvalidEvent(f"unknown field {key[:60]!r}")
        raise AssertionError("called without a disallowed key")


# What the gateway stamps on every event, by field name.
_GATEWAY_VALUES: dict[str, Default] = {
    "source_id": lambda enrichment: enrichment.source_id,
    "received_at": lambda enrichment: enrichment.received_at,
    "schema_version": lambda _enrichment: SCHEMA_VERSION,
    "violations": lambda _enrichment: None,  # set on a tagged event after validation (gateway.ingest)
}


def _fixed_value(f: Field) -> Default:
    """The field's value in a request's template: the gateway's value, else the default of an absent field."""
    if f.origin is Origin.GATEWAY:
        return _GATEWAY_VALUES.get(f.name, _constant(None))
    if f.name == "context":
        return lambda enrichment: _json_text(_merge_context({}, enrichment), f.name)
    if f.kind is Kind.JSON_OBJECT:
        return _constant("{}")
    return _constant(None)


def _missing(f: Field) -> Default | None:
    """For an absent field whose value is not in the template: make it, or reject the event."""
    if f.origin is Origin.GATEWAY:  # only fields missing from _GATEWAY_VALUES get here
        return _raiser(f"{f.name}: gateway field with no gateway value")  # schema/edit mismatch
    if f.name == "event_id":
        return lambda _enrichment: str(uuid7())
    if f.required and f.kind is not Kind.JSON_OBJECT and f.name != "context":
        return _raiser(f"{f.name}: required")
    return None


def _check(f: Field) -> Check:
    """The check of a present (non-null) client value: returns its wire value or raises InvalidEvent."""
    if f.origin is Origin.GATEWAY:
        return _raiser(f"{f.name}: set by the gateway, not by clients")  # unreachable: _reject_keys ran
    if f.name == "context":
        return _context_check(f)
    return _KIND_CHECKS.get(f.kind, _unsupported_check)(f)


def _constant(value: object) -> Default:
    return lambda _enrichment: value


def _raiser(message: str) -> Callable[..., NoReturn]:
    def fail(*_args: object) -> NoReturn:
        raise InvalidEvent(message)

    return fail


def _context_check(f: Field) -> Check:
    name = f.name

    def check(value: object, enrichment: Enrichment) -> object:
        if not isinstance(value, dict):
            raise InvalidEvent(f"{name}: expected a JSON object")
        return _json_text(_merge_context(value, enrichment), name)

    return check


def _text_check(f: Field) -> Check:
    name, shortest, longest = f.name, f.min_length, f.max_length

    def check(value: object, _enrichment: Enrichment) -> object:
        if not isinstance(value, str):
            raise InvalidEvent(f"{name}: expected a string")
        if len(value) < shortest:
            raise InvalidEvent(f"{name}: must not be empty")
        if longest is not None and len(value) > longest:
            raise InvalidEvent(f"{name}: longer than {longest} characters")
        return value

    return check


def _uuid_check(f: Field) -> Check:
    name = f.name

    def check(value: object, _enrichment: Enrichment) -> object:
        if not isinstance(value, str):
            raise InvalidEvent(f"{name}: expected a UUID string")
        return canonical_uuid(value, name)

    return check


def _timestamp_check(f: Field) -> Check:
    name = f.name
    return lambda value, _enrichment: parse_timestamp(value, name)


def _json_object_check(f: Field) -> Check:
    name = f.name

    def check(value: object, _enrichment: Enrichment) -> object:
        if not isinstance(value, dict):
            raise InvalidEvent(f"{name}: expected a JSON object")
        return _json_text(value, name)

    return check


def _smallint_check(f: Field) -> Check:
    name = f.name

    def check(value: object, _enrichment: Enrichment) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 32768:
            raise InvalidEvent(f"{name}: expected an integer 0..32767")
        return value

    return check


def _unsupported_check(f: Field) -> Check:
    return _raiser(f"{f.name}: unsupported kind {f.kind}")


_KIND_CHECKS: dict[Kind, Callable[[Field], Check]] = {
    Kind.TEXT: _text_check,
    Kind.UUID: _uuid_check,
    Kind.TIMESTAMP: _timestamp_check,
    Kind.JSON_OBJECT: _json_object_check,
    Kind.SMALLINT: _smallint_check,
}


def _merge_context(client: dict[str, Any], enrichment: Enrichment) -> dict[str, Any]:
    merged = dict(client)
    if enrichment.ip is not None:
        merged["ip"] = enrichment.ip
    if enrichment.user_agent is not None and "user_agent" not in merged:
        merged["user_agent"] = enrichment.user_agent
    return merged


def _json_text(value: dict[str, Any], name: str) -> str:
    try:
        return jsontext.dumps(value).decode()  # numbers exactly as sent, 64-bit or not
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidEvent(f"{name}: cannot be encoded: {exc}") from None

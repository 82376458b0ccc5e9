"""The event envelope: the one definition every schema in the project derives from.

Edit ``FIELDS`` to evolve the event shape. Each derived artefact (the gateway's
validator, the Arrow schema the archiver writes, the ClickHouse and Postgres DDL)
reads this tuple, so an added optional field flows everywhere from one edit.
Evolution is additive only: new fields must be optional (``required=False``) so
files, rows and messages written before the change stay readable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """Logical type of a field; each backend maps it to its own physical type."""

    UUID = "uuid"
    TEXT = "text"
    TIMESTAMP = "timestamp"
    JSON_OBJECT = "json_object"
    SMALLINT = "smallint"
    TEXT_LIST = "text_list"  # a JSON array of strings on the wire


class Origin(enum.Enum):
    """Who may set a field: the client, the gateway, or the client with a gateway default."""

    CLIENT = "client"
    GATEWAY = "gateway"
    CLIENT_OR_GATEWAY = "client_or_gateway"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool
    origin: Origin
    doc: str
    min_length: int = 0
    max_length: int | None = None
    low_cardinality: bool = False


SCHEMA_VERSION = 1

FIELDS: tuple[Field, ...] = (
    Field(
        "event_id", Kind.UUID, True, Origin.CLIENT_OR_GATEWAY,
        "Idempotency key. Client-supplied UUID, else a UUIDv7 assigned by the gateway.",
    ),
    Field(
        "type", Kind.TEXT, True, Origin.CLIENT,
        "Event name, e.g. 'page_view' or 'order_completed'.",
        min_length=1, max_length=200, low_cardinality=True,
    ),
    Field(
        "source_id", Kind.TEXT, True, Origin.GATEWAY,
        "The source (API key) that sent the event; stamped by the gateway.",
        min_length=1, max_length=200, low_cardinality=True,
    ),
    Field(
        "user_id", Kind.TEXT, False, Origin.CLIENT,
        "Known user id. At least one of user_id and anonymous_id is required.",
        min_length=1, max_length=200,
    ),
    Field(
        "anonymous_id", Kind.TEXT, False, Origin.CLIENT,
        "Device or session id for users not yet identified.",
        min_length=1, max_length=200,
    ),
    Field(
        "occurred_at", Kind.TIMESTAMP, False, Origin.CLIENT,
        "Client clock time of the event (ISO 8601 or epoch milliseconds on input).",
    ),
    Field(
        "received_at", Kind.TIMESTAMP, True, Origin.GATEWAY,
        "Gateway clock time when the event was accepted; the partitioning time everywhere.",
    ),
    Field(
        "properties", Kind.JSON_OBJECT, True, Origin.CLIENT,
        "Free-form event properties (a JSON object; {} when absent).",
    ),
    Field(
        "context", Kind.JSON_OBJECT, True, Origin.CLIENT_OR_GATEWAY,
        "Client context (library, locale, ...) plus ip and user_agent added by the gateway.",
    ),
    Field(
        "schema_version", Kind.SMALLINT, True, Origin.GATEWAY,
        "Version of this envelope definition the event was written with.",
    ),
    Field(
        "violations", Kind.TEXT_LIST, False, Origin.GATEWAY,
        "Tracking-plan violations of an event accepted in tag mode, each 'JSON pointer: expected ..., got ...'; "
        "null when it has none or its source has no plan (docs/tracking-plans.md).",
    ),
)

# Fields where at least one must be present and non-empty.
IDENTITY_FIELDS: tuple[str, ...] = ("user_id", "anonymous_id")


def field_names(fields: tuple[Field, ...] = FIELDS) -> list[str]:
    return [f.name for f in fields]

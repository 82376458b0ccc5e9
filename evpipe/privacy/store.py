"""Where the suppression list and the request ledger live: ClickHouse (stage 3) or Postgres (stages 1-2).

Both backends keep the same two things, so every process reads the list from
the store its stage already has:

* the suppression list: one row per suppressed subject, only ever added to;
* the ledger: one JSON document per request, replaced as the request advances.

A reader that finds no table yet sees an empty list: tables are created by the
first writer (``evpipe privacy`` or the gateway's admin routes), never by a reader.
"""

from __future__ import annotations

from typing import Any, Protocol

from evpipe.privacy.subjects import Subject, SuppressionSet


class PrivacyStoreError(RuntimeError):
    """The store could not be read or written (unreachable, refused); the message says which and why."""


class PrivacyStore(Protocol):
    name: str  # "clickhouse" or "postgres"

    def ensure(self) -> None:
        """Create the tables if they are missing (idempotent)."""

    def suppressions(self) -> SuppressionSet:
        """The whole list; an empty one when no table exists yet."""

    def suppress(self, subject: Subject, request_id: str) -> None:
        """Add a subject (idempotent)."""

    def save(self, request_id: str, document: dict[str, Any]) -> None:
        """Store a request's document, replacing the previous one."""

    def load(self, request_id: str) -> dict[str, Any] | None: ...

    def requests(self) -> list[dict[str, Any]]:
        """Every request's latest document, newest first."""

    def close(self) -> None: ...

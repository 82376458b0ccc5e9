"""Write a batch of queue items to Postgres; isolate the items Postgres rejects.

Two kinds of failure, told apart by SQLSTATE:

* item errors (class 22 data exception, class 23 integrity violation, P0001
  raised by a trigger): some event in the batch is bad. The batch is bisected
  (each half in its own transaction; inserts are idempotent, so a half that
  committed before a later failure is harmless) down to single events, each
  retried up to ``max_attempts`` times before it is dead-lettered;
* anything else (connection lost, server shutting down, out of resources,
  permissions, missing table...): :class:`TransientError`. Nothing is
  acknowledged; the caller retries the whole batch with backoff, because
  dead-lettering on such errors would empty the queue into the dead list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from consumers.worker.queue import DeadItem
from evpipe import pgstore
from evpipe.backoff import delay

log = logging.getLogger(__name__)

_ITEM_SQLSTATE_CLASSES = ("22", "23")
_ITEM_SQLSTATES = ("P0001",)


class TransientError(Exception):
    """Postgres is unavailable or failing for reasons not tied to one event; retry the batch later."""


# (raw queue item, row in pgstore.COLUMNS order). A plain tuple: tens of thousands are built per second.
Entry = tuple[bytes, tuple[Any, ...]]


@dataclass
class WriteResult:
    inserted: int = 0
    duplicates: int = 0
    dead: list[DeadItem] = field(default_factory=list)


def is_item_error(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate[:2] in _ITEM_SQLSTATE_CLASSES or sqlstate in _ITEM_SQLSTATES


class BatchWriter:
    """Owns one Postgres connection (re-opened after failures) and writes batches idempotently."""

    def __init__(self, database_url: str, table: str, application_name: str, max_attempts: int,
                 retry_delay_s: float = 0.2, retry_cap_s: float = 10.0,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.database_url = database_url
        self.table = table
        self.application_name = application_name
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.retry_cap_s = retry_cap_s
        self.sleep = sleep
        self.on_item_failure: Callable[[], None] = lambda: None
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                # keepalives + tcp_user_timeout: a silently dead network fails the write instead of hanging it.
                self._conn = psycopg.connect(
                    self.database_url, autocommit=True, application_name=self.application_name,
                    connect_timeout=5, keepalives=1, keepalives_idle=10, keepalives_interval=5,
                    keepalives_count=3, tcp_user_timeout=30_000)
            except psycopg.Error as exc:
                raise TransientError(f"cannot connect to Postgres: {exc}") from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, entries: list[Entry]) -> WriteResult:
        result = WriteResult()
        if entries:
            self._write(entries, result)
        return result

    def _write(self, entries: list[Entry], result: WriteResult) -> None:
        try:
            self._insert(entries, result)
            return
        except psycopg.Error as exc:
            if not is_item_error(exc):
                self.close()
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc
            self.on_item_failure()
            if len(entries) > 1:
                mid = len(entries) // 2
                self._write(entries[:mid], result)
                self._write(entries[mid:], result)
                return
            error = f"{type(exc).__name__} [{exc.sqlstate}]: {exc}"
        self._retry_single(entries[0], error, result)

    def _retry_single(self, entry: Entry, error: str, result: WriteResult) -> None:
        """An event Postgres rejected: retry it (attempt 1 already failed), then dead-letter it."""
        for attempt in range(2, self.max_attempts + 1):
            self.sleep(delay(self.retry_delay_s, self.retry_cap_s, attempt - 1))
            try:
                self._insert([entry], result)
                return
            except psycopg.Error as exc:
                if not is_item_error(exc):
                    self.close()
                    raise TransientError(f"{type(exc).__name__}: {exc}") from exc
                error = f"{type(exc).__name__} [{exc.sqlstate}]: {exc}"
        log.warning("dead-lettering event after %d attempts: %s", self.max_attempts, error)
        result.dead.append(DeadItem(entry[0], error, self.max_attempts))

    def _insert(self, entries: list[Entry], result: WriteResult) -> None:
        conn = self.connection()
        try:
            inserted = pgstore.insert_rows_copy(conn, [row for _, row in entries], self.table)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        result.inserted += inserted
        result.duplicates += len(entries) - inserted

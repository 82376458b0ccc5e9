"""The embedded ClickHouse engine (chdb), owned by one process and run one statement at a time.

chdb keeps one session per data directory; its state (current database,
settings) lives across statements. Every request therefore runs under one
lock, and what it changes is put back before the lock is released: the
request's database is selected with ``USE`` and its settings with ``SET``,
then the previous values are restored, so no request sees another's.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CODE = re.compile(r"Code: (\d+)\. DB::Exception: ")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EngineError(Exception):
    """An error the engine raised, with ClickHouse's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_chdb(cls, exc: Exception) -> EngineError:
        text = str(exc).strip()
        match = _CODE.search(text)
        if match:
            return cls(int(match.group(1)), text[match.start():])
        return cls(1002, f"Code: 1002. DB::Exception: {text}")  # UNKNOWN_EXCEPTION


@dataclass(frozen=True)
class Result:
    data: bytes
    rows_read: int
    bytes_read: int
    rows_written: int
    bytes_written: int
    elapsed_s: float


@dataclass(frozen=True)
class TempTable:
    """External data of a request: a temporary table filled from a file for one statement."""

    name: str
    structure: str
    format: str
    path: Path


def quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Engine:
    def __init__(self, data_dir: Path, connect: Callable[[str], Any] | None = None) -> None:
        import chdb

        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._conn = (connect or chdb.connect)(str(data_dir))
        self._lock = threading.Lock()
        self._database = "default"
        self._defaults: dict[str, str] = {}  # setting -> value before any request changed it
        self.closed = False

    def version(self) -> str:
        return self.run("SELECT version()", "TabSeparated").data.decode().strip()

    def run(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None,
            settings: Mapping[str, str] | None = None, database: str | None = None,
            temp_tables: tuple[TempTable, ...] = ()) -> Result:
        """Run one statement with the request's database, settings and external tables; returns its output."""
        with self._lock:
            if self.closed:
                raise EngineError(210, "Code: 210. DB::Exception: the server is shutting down. (NETWORK_ERROR)")
            with self._request_settings(settings or {}), self._database_of(database), self._temp(temp_tables):
                return self._query(sql, fmt, params)

    def _query(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> Result:
        started = time.perf_counter()
        try:
            result = self._conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:  # noqa: BLE001 - chdb raises its own error type (and RuntimeError) with the text
            raise EngineError.from_chdb(exc) from None
        data = result.bytes() if hasattr(result, "bytes") else bytes(result)
        return Result(data, _count(result, "rows_read"), _count(result, "bytes_read"),
                      _count(result, "rows_written"), _count(result, "bytes_written"),
                      time.perf_counter() - started)

    @contextmanager
    def _database_of(self, database: str | None) -> Iterator[None]:
        database = database or "default"  # as a server does for a request that names none
        if database != self._database:
            self._query(f"USE {quote_identifier(database)}")
            self._database = database
        yield

    @contextmanager
    def _request_settings(self, settings: Mapping[str, str]) -> Iterator[None]:
        if not settings:
            yield
            return
        for name in settings:
            if not _SETTING_NAME.fullmatch(name):
                raise EngineError(115, f"Code: 115. DB::Exception: Unknown setting '{name[:100]}'. (UNKNOWN_SETTING)")
        self._remember_defaults(settings)
        try:
            self._set(settings)
            yield
        finally:
            self._set({name: self._defaults[name] for name in settings})

    def _remember_defaults(self, settings: Mapping[str, str]) -> None:
        missing = [name for name in settings if name not in self._defaults]
        if not missing:
            return
        listed = ", ".join(quote_string(name) for name in missing)
        rows = self._query(f"SELECT name, value FROM system.settings WHERE name IN ({listed})").data
        known = dict(line.split("\t", 1) for line in rows.decode().splitlines() if "\t" in line)
        for name in missing:
            if name not in known:
                raise EngineError(115, f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
            self._defaults[name] = _unescape_tsv(known[name])

    def _set(self, settings: Mapping[str, str]) -> None:
        assignments = ", ".join(f"{name} = {quote_string(value)}" for name, value in settings.items())
        self._query(f"SET {assignments}")

    @contextmanager
    def _temp(self, tables: tuple[TempTable, ...]) -> Iterator[None]:
        made: list[str] = []
        try:
            for table in tables:
                name = quote_identifier(table.name)
                self._query(f"CREATE TEMPORARY TABLE {name} ({table.structure}) ENGINE = Memory")
                made.append(name)
                self._query(f"INSERT INTO {name} FROM INFILE {quote_string(str(table.path))} FORMAT {table.format}")
            yield
        finally:
            for name in made:
                self._query(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def close(self) -> None:
        """Waits for the statement in progress, then closes the engine (flushes its parts to disk)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._conn.close()


def _count(result: Any, name: str) -> int:
    value = getattr(result, name, None)
    return int(value()) if callable(value) else 0


def _unescape_tsv(value: str) -> str:
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\'", "'").replace("\\\\", "\\")

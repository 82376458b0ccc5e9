"""Erase a subject from the stage 1-2 Postgres events table.

One ``DELETE`` (it spans every daily partition). The ``<table>_ids`` ledger keeps
the subject's event ids on purpose: they are random UUIDs, not personal data,
and while they are there a re-delivered event of the subject (a Redis item
reclaimed from a dead worker, a client resend) is taken for a duplicate and not
stored again, a second line behind the suppression list. The freed space is
reclaimed by (auto)vacuum; until then the rows are unreadable but on disk.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from consumers.privacy.eraser import Save, finish
from evpipe.pgstore import TableNames
from evpipe.privacy.request import PrivacyRequest, now_text
from evpipe.privacy.subjects import Subject


def _filter(subject: Subject) -> tuple[sql.Composed, tuple[Any, ...]]:
    where = sql.SQL("{} = %s").format(sql.Identifier(subject.kind))
    if subject.source:
        return sql.SQL("{} AND source_id = %s").format(where), (subject.value, subject.source)
    return sql.SQL("{}").format(where), (subject.value,)


class PostgresEraser:
    name = "postgres"

    def __init__(self, url: str, table: str = "events") -> None:
        self.url = url
        self.names = TableNames.parse(table)

    def erase(self, request: PrivacyRequest, save: Save) -> None:
        step = request.step(self.name)
        step["status"] = "running"
        where, params = _filter(request.subject)
        count = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.names.events, where)
        with psycopg.connect(self.url, autocommit=True) as conn:
            if "rows_found" not in step:  # recorded before the delete: a rerun after it still reports them
                step["rows_found"] = _one(conn.execute(count, params).fetchone())
                save()
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self.names.events, where), params)
            step["rows_deleted"] = step.get("rows_deleted", 0) + max(deleted.rowcount, 0)
            step["deleted_at"] = now_text()
            save()
            remaining = _one(conn.execute(count, params).fetchone())
        finish(step, remaining, save)


def _one(row: tuple[Any, ...] | None) -> int:
    return int(row[0]) if row else 0

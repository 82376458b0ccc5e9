"""Erase a subject from ClickHouse: the ``events`` rows, and their counts in the per-minute rollup.

**Lightweight DELETE**, not ``ALTER TABLE ... DELETE``: the mutation rewrites every
part holding a matching row in full (``user_id`` is not in the sorting key, so a
user's rows are spread over nearly every part: the whole table). A lightweight
DELETE writes a small ``_row_exists`` mask per affected part and is waited for
(``lightweight_deletes_sync``): once it returns, no query sees the rows.
``ALTER TABLE events APPLY DELETED MASK IN PARTITION`` then rewrites only the
touched months' parts without them, so the bytes are gone too, not only hidden
until the next merge.

**The rollup** (``events_per_minute``, a SummingMergeTree fed at insert) keeps
counts only, but they include the subject's events. Before deleting, the
subject's counts per (source, type, minute) are read and recorded in the
ledger; after, the same counts are inserted negated (UInt64 two's complement:
the SummingMergeTree sum and ``sum(events)`` wrap back to the right number, and
a row that sums to 0 is dropped at the next merge). The insert carries a dedup
token derived from the request and the counts, so a rerun after a crash
between the insert and the ledger save adds nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from consumers.loader.tables import Tables, Topology
from consumers.privacy.eraser import Save, finish
from evpipe.privacy.request import PrivacyRequest, now_text
from evpipe.privacy.subjects import Subject

_WRAP = 1 << 64


def subject_filter(subject: Subject) -> tuple[str, dict[str, Any]]:
    where = f"{subject.kind} = {{value:String}}"
    params: dict[str, Any] = {"value": subject.value}
    if subject.source:
        where += " AND source_id = {source:String}"
        params["source"] = subject.source
    return where, params


class ClickHouseEraser:
    name = "clickhouse"

    def __init__(self, client: Client, database: str, cluster: str = "") -> None:
        self.client = client
        self.tables = Tables(database)
        self.topology = Topology(cluster)

    def erase(self, request: PrivacyRequest, save: Save) -> None:
        step = request.step(self.name)
        step["status"] = "running"
        if "rollup_delta" not in step:
            step["rollup_delta"] = self.rollup_delta(request.subject)
            step["rows_found"] = sum(row[3] for row in step["rollup_delta"])
            save()
        months = sorted({row[2][:7].replace("-", "") for row in step["rollup_delta"]})
        if not step.get("deleted_at"):
            self.delete(request.subject, months)
            step["deleted_at"] = now_text()
            save()
        if not step.get("rollup_corrected"):
            self.correct_rollup(step["rollup_delta"], f"privacy:{request.id}:{request.runs}")
            step["rollup_corrected"] = True
            save()
        finish(step, self.remaining(request.subject), save)

    def rollup_delta(self, subject: Subject) -> list[list[Any]]:
        """The subject's event counts per (source_id, type, minute): what the rollup holds for them."""
        where, params = subject_filter(subject)
        rows = self.client.query(
            f"SELECT source_id, type, toString(toStartOfMinute(received_at)) AS minute, count() "
            f"FROM {self.tables.events} WHERE {where} GROUP BY source_id, type, minute ORDER BY source_id, type, minute",
            parameters=params).result_rows
        return [[source, kind, minute, int(count)] for source, kind, minute, count in rows]

    def delete(self, subject: Subject, months: list[str]) -> None:
        """On a cluster: on every node's local table (a Distributed table takes no DELETE)."""
        where, params = subject_filter(subject)
        local = self.tables.name(self.topology.storage("events")) + self.topology.on_cluster
        self.client.command(f"DELETE FROM {local} WHERE {where}", parameters=params,
                            settings={"mutations_sync": 2})  # waited for (lightweight_deletes_sync from 24.4)
        for month in months:  # the bytes too: rewrite the touched parts without the masked rows
            self.client.command(f"ALTER TABLE {local} APPLY DELETED MASK IN PARTITION {int(month)}",
                                settings={"mutations_sync": 2})

    def correct_rollup(self, delta: list[list[Any]], run: str) -> None:
        if not delta:
            return
        token = f"{run}:{hashlib.sha256(orjson.dumps(delta)).hexdigest()[:16]}"
        rows = [[source, kind, dt.datetime.fromisoformat(minute).replace(tzinfo=dt.UTC), _WRAP - count]
                for source, kind, minute, count in delta]
        settings = {"insert_deduplication_token": token, "insert_deduplicate": 1}
        if self.topology.clustered:  # the token travels with the block to its shard (as the loader inserts)
            settings["distributed_foreground_insert"] = 1
        self.client.insert(self.tables.rollup, rows, column_names=["source_id", "type", "minute", "events"],
                           settings=settings)

    def remaining(self, subject: Subject) -> int:
        where, params = subject_filter(subject)
        return int(self.client.query(f"SELECT count() FROM {self.tables.events} WHERE {where}",
                                     parameters=params).result_rows[0][0])

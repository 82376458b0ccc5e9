"""The worker's parse step: wire-format JSON items into Postgres row tuples, unique by event id.

It takes the place of the Kafka consumers' Arrow parse (``consumers.runtime.parse``)
in the same loop: the Postgres sink writes row tuples with COPY, and building
them straight from the JSON costs less than going through Arrow. Items that
are not JSON objects with an ``event_id`` string are poison (dead letters at
once: retrying cannot help); a second item with an event id already in the
batch is dropped here (Postgres would ignore it anyway) and counted.
"""

from __future__ import annotations

import orjson

from consumers.runtime.parse import Parsed, Poison
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.writer import Entry
from evpipe import pgstore
from evpipe.privacy.subjects import SuppressionSet

_SOURCE, _USER, _ANONYMOUS = (pgstore.COLUMNS.index(n) for n in ("source_id", "user_id", "anonymous_id"))


def filter_entries(entries: list[Entry], suppressions: SuppressionSet) -> tuple[list[Entry], list[int]] | None:
    """The suppression step's row filter for the worker's entries (``consumers.runtime.suppress``)."""
    matches = suppressions.matches
    kept = [i for i, (_item, row) in enumerate(entries) if not matches(row[_SOURCE], row[_USER], row[_ANONYMOUS])]
    if len(kept) == len(entries):
        return None
    return [entries[i] for i in kept], kept


class RowParser:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def __call__(self, offsets: list[int], values: list[bytes]) -> Parsed[list[Entry]]:
        entries: dict[str, Entry] = {}
        kept_offsets: list[int] = []  # aligned with the entries (dicts keep insertion order)
        poison: list[Poison] = []
        duplicates = 0
        loads, row_of = orjson.loads, pgstore.event_row
        for offset, item in zip(offsets, values):
            try:
                row = row_of(loads(item))
                key = row[0].lower()  # one UUID, one key, whatever the client's letter case
            except orjson.JSONDecodeError as exc:
                poison.append(Poison(offset, item, f"not JSON: {exc}"))
                continue
            except (TypeError, AttributeError):  # not an object, or no event_id string
                poison.append(Poison(offset, item, "not a wire-format event: no event_id string"))
                continue
            if key in entries:
                duplicates += 1
                continue
            entries[key] = (item, row)
            kept_offsets.append(offset)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        return Parsed(list(entries.values()), poison, kept_offsets)

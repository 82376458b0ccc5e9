"""Erase a subject from the Parquet archive: rewrite each file that holds their rows, without them.

Finding the files reads the per-file user index (``consumers/archiver/userindex.py``,
a few KB each) instead of the data; a file with no index (archived before the
index existed) is checked by reading its three id columns. Each affected file is
read whole, filtered, written with the archiver's encoding and put back under
the same name (``replace.py``), then its index is rewritten without the
subject. Names, and so the exactly-once file set, are unchanged: an archiver
re-forming that batch later (it is suppressed there) writes the same rows.

Every rewritten file is recorded in the ledger as it is done; a rerun finds
only the files still listed by their index (a kill between a file and its index
leaves one listed: it is read, has nothing to remove, and its index is fixed).
The check at the end reads the id columns of every file the request rewrote and
of every file still indexed with the subject: 0 rows must remain.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers.archiver import userindex
from consumers.archiver.store import Store
from consumers.privacy.eraser import Save, finish
from consumers.privacy.replace import remove_temporaries, replace
from consumers.runtime.suppress import arrow_drop_mask
from evpipe.privacy.request import PrivacyRequest
from evpipe.privacy.subjects import SuppressionSet

log = logging.getLogger("evpipe.privacy")
ID_COLUMNS = ["source_id", "user_id", "anonymous_id"]


@dataclass(frozen=True)
class Encoding:
    """How the archiver writes Parquet (ARCHIVER_ZSTD_LEVEL, ARCHIVER_ROW_GROUP_ROWS)."""

    zstd_level: int = 3
    row_group_rows: int = 128 * 1024


class ArchiveEraser:
    name = "archive"

    def __init__(self, store: Store, topic: str, encoding: Encoding = Encoding(), threads: int = 8) -> None:
        self.store = store
        self.topic = topic
        self.encoding = encoding
        self.threads = threads

    def erase(self, request: PrivacyRequest, save: Save) -> None:
        step = request.step(self.name)
        step["status"] = "running"
        step.setdefault("files_rewritten", [])
        step.setdefault("rows_removed", 0)
        remove_temporaries(self.store, request.id)
        subjects = SuppressionSet([request.subject])
        files, candidates = self.candidates(subjects)
        step.update(files_in_archive=files, files_matched=len(candidates))
        save()
        for key in candidates:
            removed = self.erase_file(key, subjects, request.id)
            if removed and key not in step["files_rewritten"]:
                step["files_rewritten"].append(key)
            step["rows_removed"] += removed
            save()
        finish(step, self.remaining(subjects, step["files_rewritten"]), save)

    def candidates(self, subjects: SuppressionSet) -> tuple[int, list[str]]:
        """(data files in the archive, those that may hold the subjects), by the user index."""
        data = self.store.list(f"topic={self.topic}/")
        data = [key for key in data if key.endswith(".parquet")]
        indexed = set(self.store.list(f"{userindex.PREFIX}topic={self.topic}/"))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="evpipe-privacy") as pool:
            hits = list(pool.map(lambda key: self._may_hold(key, key_in(indexed, key), subjects), data))
        return len(data), [key for key, hit in zip(data, hits) if hit]

    def _may_hold(self, key: str, indexed: bool, subjects: SuppressionSet) -> bool:
        if indexed:
            raw = self.store.get(userindex.index_key(key))
            if raw is not None:
                return userindex.mentions(userindex.decode(raw), subjects)
        return self.count(key, subjects) > 0

    def count(self, key: str, subjects: SuppressionSet) -> int:
        """The subjects' rows in one file, from its id columns alone."""
        try:
            table = pq.read_table(self.store.open(key), columns=ID_COLUMNS)
        except FileNotFoundError:
            return 0
        drop = arrow_drop_mask(table, subjects)
        return 0 if drop is None else int(pc.sum(drop).as_py() or 0)

    def erase_file(self, key: str, subjects: SuppressionSet, request_id: str) -> int:
        """Rewrite one file without the subjects' rows, then its index; returns the rows removed."""
        try:
            parquet = pq.ParquetFile(self.store.open(key))
        except FileNotFoundError:  # only its index was written: the archiver rewrites it, suppressed
            return 0
        table = parquet.read()
        drop = arrow_drop_mask(table, subjects)
        removed = 0 if drop is None else int(pc.sum(drop).as_py() or 0)
        if removed:
            kept = table.filter(pc.invert(drop))
            replace(self.store, key, self.encode(kept, parquet.schema_arrow), request_id)
            table = kept
            log.info("rewrote %s without %d row(s)", key, removed)
        self.store.put(userindex.index_key(key), userindex.encode(userindex.build(table)))
        return removed

    def encode(self, table: pa.Table, schema: pa.Schema) -> pa.Buffer:
        """The archiver's encoding, in the file's own schema."""
        out = pa.BufferOutputStream()
        pq.write_table(table.cast(schema), out, compression="zstd", compression_level=self.encoding.zstd_level,
                       row_group_size=self.encoding.row_group_rows)
        return out.getvalue()

    def remaining(self, subjects: SuppressionSet, rewritten: list[str]) -> int:
        """Rows of the subjects in the files this request rewrote and in any file still indexed with them."""
        _files, still = self.candidates(subjects)
        keys = sorted(set(rewritten) | set(still))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="evpipe-privacy") as pool:
            return sum(pool.map(lambda key: self.count(key, subjects), keys))


def key_in(indexed: set[str], key: str) -> bool:
    return userindex.index_key(key) in indexed

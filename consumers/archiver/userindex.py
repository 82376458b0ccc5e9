"""The per-file user index: the distinct user ids and anonymous ids of one archive data file.

Written next to each data file, before it, under ``_users/`` (skipped by dataset
readers, like ``_manifests/``) with the data file's name and ``.arrow``:

    _users/topic=events/dt=2026-11-21/hour=10/events-0003-...-....arrow

A few KB of Arrow IPC (columns ``kind``, ``value``, ``source_id``), so a privacy
deletion finds the files that hold a user by reading these small files instead
of every data file (``consumers/privacy/archive.py``). Row-group statistics
cannot do it: a file of many users spans the whole range of ids in every row
group. The index is a superset: after a rewrite removed a user, it is rewritten
without them.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import ipc

from evpipe.privacy.subjects import KINDS, SuppressionSet

PREFIX = "_users/"
SCHEMA = pa.schema([("kind", pa.string()), ("value", pa.string()), ("source_id", pa.string())])


def index_key(data_key: str) -> str:
    return PREFIX + data_key.removesuffix(".parquet") + ".arrow"


def data_key_of(key: str) -> str:
    return key.removeprefix(PREFIX).removesuffix(".arrow") + ".parquet"


def build(table: pa.Table) -> pa.Table:
    """The distinct (kind, value, source_id) of a data table's rows."""
    parts = []
    for kind in KINDS:
        if kind not in table.column_names:
            continue
        pairs = table.select(["source_id", kind]).filter(pc.is_valid(table.column(kind)))
        distinct = pairs.group_by(["source_id", kind]).aggregate([])
        parts.append(pa.table({"kind": pa.array([kind] * distinct.num_rows, pa.string()),
                               "value": distinct.column(kind).cast(pa.string()),
                               "source_id": distinct.column("source_id").cast(pa.string())}, schema=SCHEMA))
    return pa.concat_tables(parts) if parts else SCHEMA.empty_table()


def encode(index: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, SCHEMA, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(index)
    return sink.getvalue()


def decode(data: bytes) -> pa.Table:
    return ipc.open_file(pa.BufferReader(data)).read_all()


def mentions(index: pa.Table, suppressions: SuppressionSet) -> bool:
    """Whether the index lists any of the subjects (exact: same kind, value, and source unless global)."""
    for (kind, source), values in suppressions.groups().items():
        hit = pc.and_(pc.equal(index.column("kind"), kind), pc.is_in(index.column("value"), pa.array(values)))
        if source:
            hit = pc.and_(hit, pc.equal(index.column("source_id"), source))
        if pc.any(hit).as_py():
            return True
    return False

"""Object names in the archive: hive-partitioned data files, begun-batch manifests and kept-id files.

Data: ``topic=<t>/dt=YYYY-MM-DD/hour=HH/<t>-<partition>-<first>-<last>.parquet``
(offsets zero-padded so names sort). The overflow topic's files go under the
main topic's folder (``topic=events/.../events.overflow-...``): one dataset.
The name is a function of the batch's
identity and the hour alone: writing a batch again replaces the same objects.

Manifests: ``_manifests/topic=<t>/partition=<p>/<first>.json``. The leading
underscore keeps them out of dataset scans (pyarrow, Spark and DuckDB skip
``_``- and ``.``-prefixed paths).

Kept ids: ``_dedup/topic=<t>/partition=<p>/<first>.arrow``, the event ids a
batch archived (see consumers/archiver/dedup.py). Arrow IPC, not Parquet, so
tools that glob ``*.parquet`` under the archive never take them for data.
"""

from __future__ import annotations

import datetime as dt


def data_key(topic: str, partition: int, first: int, last: int, hour: dt.datetime, folder: str | None = None) -> str:
    """``folder``: the topic folder the file goes under, when not its own topic's (the overflow lane's files
    sit beside the main topic's: one dataset for readers, told apart by the file name's topic)."""
    return (f"topic={folder or topic}/dt={hour:%Y-%m-%d}/hour={hour:%H}/"
            f"{topic}-{partition:04d}-{first:020d}-{last:020d}.parquet")


def manifest_key(topic: str, partition: int, first: int) -> str:
    return f"_manifests/topic={topic}/partition={partition:04d}/{first:020d}.json"


def ids_prefix(topic: str, partition: int) -> str:
    return f"_dedup/topic={topic}/partition={partition:04d}/"


def ids_key(topic: str, partition: int, first: int) -> str:
    return f"{ids_prefix(topic, partition)}{first:020d}.arrow"


def ids_first_offset(key: str) -> int | None:
    """The first offset of the batch an id file belongs to, or None for any other name."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "arrow" and stem.isdigit() else None

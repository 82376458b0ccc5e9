"""Object names in the archive: hive-partitioned data files and begun-batch manifests.

Data: ``topic=<t>/dt=YYYY-MM-DD/hour=HH/<t>-<partition>-<first>-<last>.parquet``
(offsets zero-padded so names sort). The name is a function of the batch's
identity and the hour alone: writing a batch again replaces the same objects.

Manifests: ``_manifests/topic=<t>/partition=<p>/<first>.json``. The leading
underscore keeps them out of dataset scans (pyarrow, Spark and DuckDB skip
``_``- and ``.``-prefixed paths).
"""

from __future__ import annotations

import datetime as dt


def data_key(topic: str, partition: int, first: int, last: int, hour: dt.datetime) -> str:
    return (f"topic={topic}/dt={hour:%Y-%m-%d}/hour={hour:%H}/"
            f"{topic}-{partition:04d}-{first:020d}-{last:020d}.parquet")


def manifest_key(topic: str, partition: int, first: int) -> str:
    return f"_manifests/topic={topic}/partition={partition:04d}/{first:020d}.json"

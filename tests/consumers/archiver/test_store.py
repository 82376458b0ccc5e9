"""LocalStore: listing keys under a prefix, and removing the temp files a killed write left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

from consumers.archiver.store import LocalStore


def test_list_returns_sorted_keys_under_a_prefix_without_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("_dedup/topic=a/partition=0001/00000000000000000200.arrow",
                "_dedup/topic=a/partition=0001/00000000000000000000.arrow",
                "_dedup/topic=a/partition=0002/00000000000000000000.arrow", "topic=a/x.parquet"):
        store.put(key, b"x")
    (tmp_path / "_dedup/topic=a/partition=0001/.00000000000000000300.arrow.0badc0de.tmp").write_bytes(b"")
    assert store.list("_dedup/topic=a/partition=0001/") == [
        "_dedup/topic=a/partition=0001/00000000000000000000.arrow",
        "_dedup/topic=a/partition=0001/00000000000000000200.arrow",
    ]
    assert len(store.list("_dedup/")) == 3
    assert store.list("_dedup/topic=b/") == []
    assert store.list("topic=a/x") == ["topic=a/x.parquet"]


def test_stale_temp_files_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("topic=a/dt=2026-01-01/hour=00/a.parquet", b"data")
    hour_dir = tmp_path / "topic=a/dt=2026-01-01/hour=00"
    stale = hour_dir / ".a2.parquet.0123abcd.tmp"
    stale_manifest = tmp_path / "_manifests/topic=a/partition=0000/.00000000000000000000.json.deadbeef.tmp"
    fresh = hour_dir / ".a3.parquet.89abcdef.tmp"  # another archiver writing it right now
    for path in (stale, stale_manifest, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (stale, stale_manifest):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert store.remove_stale_temp_files(3600) == 2
    assert not stale.exists() and not stale_manifest.exists()
    assert fresh.exists() and (hour_dir / "a.parquet").read_bytes() == b"data"
    assert store.remove_stale_temp_files(3600) == 0

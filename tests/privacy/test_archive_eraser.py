"""The archive eraser on a local directory and on S3: only the files holding the subject are read and rewritten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from consumers.archiver import userindex
from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore, S3Store, Store
from consumers.privacy.archive import ArchiveEraser
from consumers.runtime.parse import parse_values
from consumers.runtime.sink import Batch
from evpipe.privacy.request import PrivacyRequest
from evpipe.privacy.subjects import Subject
from tests.providers import Service


class CountingStore:
    """A store that counts which data files were opened."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.opened: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self, key: str) -> Any:
        self.opened.append(key)
        return self.inner.open(key)


def _wire(n: int, user: str) -> bytes:
    return orjson.dumps({"event_id": f"00000000-0000-4000-8000-{n:012d}", "type": "t", "source_id": "web",
                         "user_id": user, "received_at": "2026-11-21T10:00:00.000Z", "properties": "{}",
                         "context": "{}", "schema_version": 1})


def _archive(store: Store) -> None:
    """Ten files of 100 events; user A in files 0, 3 and 7 only; file 9 written without an index."""
    sink = ParquetSink(store)
    for f in range(10):
        users = ["A" if f in (0, 3, 7) and i % 10 == 0 else f"u{i % 7}" for i in range(100)]
        offsets = list(range(f * 100, f * 100 + 100))
        parsed = parse_values(offsets, [_wire(o, u) for o, u in zip(offsets, users)])
        batch = Batch("events", 0, offsets[0], offsets[-1], parsed.table, 0, parsed.offsets)
        sink.begin(batch)
        sink.write(batch)


def _rows(store: Store, keys: list[str]) -> dict[str, list[str]]:
    return {key: pq.read_table(store.open(key)).column("event_id").to_pylist() for key in keys}


def _check(store: Store) -> None:
    _archive(store)
    keys = [k for k in store.list("topic=events/") if k.endswith(".parquet")]
    assert len(keys) == 10
    if isinstance(store, LocalStore):
        (store.root / userindex.index_key(keys[9])).unlink()  # archived before the index existed
    before = _rows(store, keys)
    counting = CountingStore(store)
    request = PrivacyRequest.new("delete", Subject("user_id", "A"), "test")
    ArchiveEraser(counting, "events").erase(request, lambda: None)  # type: ignore[arg-type]
    step = request.step("archive")
    assert step["status"] == "done" and step["remaining"] == 0
    assert step["rows_removed"] == 30 and sorted(step["files_rewritten"]) == [keys[0], keys[3], keys[7]]
    expected_opens = {keys[0], keys[3], keys[7]} | ({keys[9]} if isinstance(store, LocalStore) else set())
    assert set(counting.opened) == expected_opens  # files without A are never read (the index says so)
    after = _rows(store, keys)
    assert sorted(store.list("topic=events/")) == sorted(keys)
    for key in keys:
        kept = [i for i, u in zip(before[key], _users(before, key)) if u != "A"]
        assert after[key] == kept
    assert not store.list("_privacy/")  # no temporary object left


def _users(before: dict[str, list[str]], key: str) -> list[str]:
    first = int(key.rsplit("-", 2)[1])
    return ["A" if (first // 100) in (0, 3, 7) and i % 10 == 0 else f"u{i % 7}" for i in range(100)]


def test_local_archive(tmp_path: Path) -> None:
    _check(LocalStore(tmp_path / "archive"))


@pytest.mark.s3
def test_s3_archive(s3: Service, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.extra["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.extra["secret_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.extra["region"])
    _check(S3Store(s3_bucket, "lake", s3.url, 64 * 1024 * 1024))

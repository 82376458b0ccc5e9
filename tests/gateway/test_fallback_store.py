"""The fallback store: object bytes and names, and the store contract on local disk, S3 (moto) and Ceph RGW.

Each store is checked for: a put is listed with its event count and time; a claim is exclusive (of many
drainers racing for one object exactly one wins); a claim whose lease ended is taken over by one drainer;
release gives an object back; delete removes it; a store that cannot take writes says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.backends.base import Message
from gateway.fallback.local import LocalFallbackStore
from gateway.fallback.objects import CorruptObject, decode, encode, object_name, parse_name
from gateway.fallback.store import FallbackStore, fallback_uri, open_store
from tests.providers import Service

MESSAGES = [
    Message("events", b"src:u1", b'{"event_id":"a"}'),
    Message("events", None, b""),
    Message("events.invalid", b"src", b'{"error":"x"}', (("error", b"type: must be a string"), ("x", b"\x00\xff"))),
]


# ---- the object's bytes and name -------------------------------------------------------------------


def test_objects_round_trip_exactly() -> None:
    assert decode(encode(MESSAGES)) == MESSAGES
    assert decode(encode([])) == []


@pytest.mark.parametrize("damage", [lambda b: b[:-1], lambda b: b[:10], lambda b: b[:20] + b"\x01" + b[21:],
                                    lambda b: b"XXXX" + b[4:], lambda b: b""])
def test_damaged_objects_are_refused(damage: object) -> None:
    with pytest.raises(CorruptObject):
        decode(damage(encode(MESSAGES)))  # type: ignore[operator]


def test_names_sort_by_time_and_carry_the_event_count() -> None:
    first, second = object_name(1_700_000_000.5, 3, "ab12", 1), object_name(1_700_000_001.0, 12, "ab12", 2)
    assert first < second
    parsed = parse_name(second)
    assert parsed is not None and parsed.events == 12 and parsed.written_at == 1_700_000_001.0
    assert parse_name(".tmp") is None and parse_name("other.txt") is None


def test_uri_unset_is_the_state_dir_and_empty_is_off(tmp_path: Path) -> None:
    assert fallback_uri(None, tmp_path) == str(tmp_path.resolve() / "fallback")
    assert fallback_uri("", tmp_path) is None and fallback_uri("  ", tmp_path) is None
    assert fallback_uri("s3://b/fallback/", tmp_path) == "s3://b/fallback/"
    with pytest.raises(ValueError, match="scheme"):
        open_store("ftp://x/y")


# ---- the store contract, on each store --------------------------------------------------------------


@pytest.fixture
def moto_bucket() -> Iterator[str]:
    from moto import mock_aws

    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fallback-test")
        yield "fallback-test"


@pytest.fixture(params=["local", "moto", pytest.param("rgw", marks=[pytest.mark.s3, pytest.mark.slow])])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FallbackStore:
    if request.param == "local":
        return open_store(str(tmp_path / "fallback"))
    if request.param == "moto":
        bucket = request.getfixturevalue("moto_bucket")
        return open_store(f"s3://{bucket}/fallback/")
    s3: Service = request.getfixturevalue("s3")
    bucket = request.getfixturevalue("s3_bucket")
    for name, value in (("AWS_ACCESS_KEY_ID", s3.extra["access_key"]), ("AWS_SECRET_ACCESS_KEY", s3.extra["secret_key"]),
                        ("AWS_DEFAULT_REGION", s3.extra["region"])):
        monkeypatch.setenv(name, value)
    return open_store(f"s3://{bucket}/fallback/", s3.url)


def _put(store: FallbackStore, events: int = 3, at: float | None = None, sequence: int = 1) -> str:
    name = object_name(at or time.time(), events, "w1", sequence)
    store.put(name, encode(MESSAGES[:events]))
    return name


def test_put_is_listed_with_its_events_oldest_first(store: FallbackStore) -> None:
    assert store.pending() == []
    newer = _put(store, 3, time.time(), 2)
    older = _put(store, 1, time.time() - 60, 1)
    pending = store.pending()
    assert [p.name for p in pending] == [older, newer]
    assert [p.events for p in pending] == [1, 3]


def test_a_claim_is_exclusive_and_delete_removes_the_object(store: FallbackStore) -> None:
    name = _put(store)
    claim = store.claim(name, "drainer-a", 60)
    assert claim is not None
    assert store.claim(name, "drainer-b", 60) is None  # held
    assert [p.name for p in store.pending()] == [name]  # a claimed object is still pending
    data = store.read(claim)
    assert data is not None and decode(data) == MESSAGES
    store.delete(claim)
    assert store.pending() == []
    late = store.claim(name, "drainer-b", 60)  # a drainer that listed it before the delete
    assert late is None or store.read(late) is None  # gets nothing to produce


def test_release_gives_the_object_back(store: FallbackStore) -> None:
    name = _put(store)
    claim = store.claim(name, "drainer-a", 60)
    assert claim is not None
    store.release(claim)
    again = store.claim(name, "drainer-b", 60)
    assert again is not None and store.read(again) is not None


def test_an_expired_claim_is_taken_over_by_one_drainer(store: FallbackStore) -> None:
    name = _put(store)
    dead = store.claim(name, "drainer-dead", 0.2)
    assert dead is not None
    assert store.claim(name, "drainer-b", 60) is None  # still within its lease
    time.sleep(2.5)  # S3 times are whole seconds: a lease ends a second late there
    taken = store.claim(name, "drainer-b", 60)
    assert taken is not None
    assert store.claim(name, "drainer-c", 60) is None  # the new claim holds
    data = store.read(taken)
    assert data is not None and decode(data) == MESSAGES
    store.delete(taken)
    assert store.pending() == []
    store.sweep()


def test_racing_drainers_claim_an_object_once(store: FallbackStore) -> None:
    names = [_put(store, 1, sequence=i) for i in range(5)]
    won: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def drainer(owner: str) -> None:
        start.wait()
        for name in names:
            if store.claim(name, owner, 60) is not None:
                with lock:
                    won.append((name, owner))

    threads = [threading.Thread(target=drainer, args=(f"d{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(name for name, _ in won) == sorted(names), won


def test_a_local_store_that_cannot_write_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    store = LocalFallbackStore(blocker / "fallback")
    assert store.check() is not None
    with pytest.raises(OSError):
        _put(store)
    assert store.pending() == []


def test_local_put_leaves_no_temp_file_and_is_fsynced(tmp_path: Path) -> None:
    store = LocalFallbackStore(tmp_path)
    name = _put(store)
    assert sorted(p.name for p in (tmp_path / "pending").iterdir()) == [name]
    assert store.check() is None


def test_s3_store_without_its_bucket_is_not_ready(moto_bucket: str) -> None:
    assert open_store(f"s3://{moto_bucket}/fallback/").check() is None
    assert open_store("s3://no-such-bucket/fallback/").check() is not None

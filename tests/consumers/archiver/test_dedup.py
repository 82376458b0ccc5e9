"""Resends out of the archive: within a batch, across batches in the window, and the same after a rebuild."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from consumers.archiver.dedup import Deduplicator
from consumers.archiver.ids import SortedIds, sort_order, uuid_keys
from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.runtime.sink import Batch
from schemas.arrow import parse_ndjson
from tests.consumers.archiver.helpers import read_archive, resend
from tests.consumers.runtime.events import BASE, events

HOUR = dt.timedelta(hours=1)


def batch(values: list[bytes], first: int, partition: int = 0) -> Batch:
    return Batch("ev", partition, first, first + len(values) - 1, parse_ndjson(b"\n".join(values)), 0)


def ids_of(table: pa.Table) -> list[str]:
    return [str(i) for i in table.column("event_id").to_pylist()]


def fresh_values(n: int, start: dt.datetime = BASE, hours: int = 1) -> tuple[list[bytes], list[str]]:
    generated = list(events(n, hours=hours, start=start))
    return [v for _, v, _, _ in generated], [e for _, _, e, _ in generated]


def data_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("topic=*/dt=*/hour=*/*.parquet"))}


def test_repeats_within_a_batch_keep_the_first_copy(tmp_path: Path) -> None:
    values, ids = fresh_values(50)
    copies = [resend(values[3], dt.timedelta(seconds=5)), resend(values[3], dt.timedelta(seconds=9)),
              resend(values[40], dt.timedelta(seconds=1))]
    sink = ParquetSink(LocalStore(tmp_path))
    b = batch(values[:10] + copies[:2] + values[10:] + copies[2:], 0)
    sink.begin(b)
    sink.write(b)
    table = read_archive(tmp_path)
    assert sorted(ids_of(table)) == sorted(ids)
    kept = table.filter(pa.compute.equal(table.column("event_id"), ids[3]))
    assert kept.column("received_at")[0].as_py() == b.table.column("received_at")[3].as_py()  # the first one


def test_repeats_of_earlier_batches_within_the_window_are_dropped(tmp_path: Path) -> None:
    values, ids = fresh_values(300, hours=2)
    sink = ParquetSink(LocalStore(tmp_path), dedup_window_s=3 * 3600)
    first = batch(values[:100], 0)
    second = batch(values[100:200] + [resend(v, HOUR) for v in values[:30]], 100)
    third = batch(values[200:] + [resend(v, 2 * HOUR) for v in values[20:50]], 230)
    for b in (first, second, third):
        sink.begin(b)
        sink.write(b)
    got = ids_of(read_archive(tmp_path))
    assert len(got) == len(set(got)) == 300 and set(got) == set(ids)


def test_repeats_outside_the_window_are_kept(tmp_path: Path) -> None:
    values, _ = fresh_values(100)
    later, _ = fresh_values(50, start=BASE + 3 * HOUR)
    sink = ParquetSink(LocalStore(tmp_path), dedup_window_s=2 * 3600)
    old = batch(values, 0)
    # received 3 h after the originals, and in a batch whose newest event is 3.5 h after them
    new = batch([resend(v, 3 * HOUR) for v in values[:10]] + later, 100)
    for b in (old, new):
        sink.begin(b)
        sink.write(b)
    got = ids_of(read_archive(tmp_path))
    assert len(got) == 160 and len(set(got)) == 150


def test_window_zero_keeps_every_copy_and_stores_no_ids(tmp_path: Path) -> None:
    values, _ = fresh_values(20)
    sink = ParquetSink(LocalStore(tmp_path), dedup_window_s=0)
    b = batch(values + values[:5], 0)
    sink.begin(b)
    sink.write(b)
    assert read_archive(tmp_path).num_rows == 25
    assert not (tmp_path / "_dedup").exists()


def test_ids_not_in_uuid_form_are_kept_and_uppercase_is_the_same_uuid(tmp_path: Path) -> None:
    values, ids = fresh_values(10)
    bare = orjson.loads(values[2]) | {"event_id": ids[2].replace("-", "")}
    upper = orjson.loads(values[0]) | {"event_id": ids[0].upper()}
    sink = ParquetSink(LocalStore(tmp_path))
    b = batch(values + [orjson.dumps(bare), orjson.dumps(bare), orjson.dumps(upper), values[1]], 0)
    sink.begin(b)
    sink.write(b)
    got = ids_of(read_archive(tmp_path))
    # The bare-hex copies are never deduplicated; the uppercase one is ids[0] as a UUID (as in ClickHouse).
    assert len(got) == 12 and got.count(ids[2].replace("-", "")) == 2 and ids[0].upper() not in got


def _history(n_batches: int, size: int, resent: int) -> list[list[bytes]]:
    """Batches an hour apart, each also resending ``resent`` events of every earlier batch (received now)."""
    out: list[list[bytes]] = []
    originals: list[list[bytes]] = []
    for i in range(n_batches):
        values, _ = fresh_values(size, start=BASE + i * HOUR, hours=1)
        repeats = [resend(v, (i - j) * HOUR) for j, old in enumerate(originals) for v in old[:resent]]
        out.append(values[: size // 2] + repeats + values[size // 2:])
        originals.append(values)
    return out


@pytest.mark.parametrize(("window_s", "max_ids"), [(86_400, 4_000_000), (3 * 3600, 4_000_000), (86_400, 250)])
def test_a_rebuilt_state_drops_the_same_rows_and_writes_identical_files(tmp_path: Path, window_s: int,
                                                                         max_ids: int) -> None:
    """Crash after each batch: a fresh sink re-forms it (as pending_end makes it) and must write the same bytes."""
    history = _history(6, 100, 15)
    running = ParquetSink(LocalStore(tmp_path / "a"), dedup_window_s=window_s, dedup_max_ids=max_ids)
    first = 0
    for values in history:
        b = batch(values, first)
        running.begin(b)
        running.write(b)
        written = data_files(tmp_path / "a")
        # Another process takes the partition over at this batch: same store content below it.
        other_root = tmp_path / f"b{first}"
        _copy_tree(tmp_path / "a", other_root)
        for path in other_root.glob("topic=*/dt=*/hour=*/*.parquet"):
            if f"-{first:020d}-" in path.name:
                path.unlink()
        taker = ParquetSink(LocalStore(other_root), dedup_window_s=window_s, dedup_max_ids=max_ids)
        assert taker.pending_end("ev", 0, first) == b.last_offset
        taker.begin(b)
        taker.write(b)
        assert data_files(other_root) == written
        first = b.last_offset + 1
    got = ids_of(read_archive(tmp_path / "a"))
    assert len(set(got)) == 600
    if max_ids == 4_000_000 and window_s == 86_400:
        assert len(got) == 600  # every resend within the window and the cap
    else:
        assert len(got) > 600  # resends of batches out of play are archived again


def test_a_rebuild_ignores_batches_at_and_after_its_start(tmp_path: Path) -> None:
    """A batch re-formed after later ones were begun (their commit lost) decides from what is below it only."""
    history = _history(4, 80, 10)
    sink = ParquetSink(LocalStore(tmp_path))
    batches, first = [], 0
    for values in history:
        b = batch(values, first)
        batches.append(b)
        sink.begin(b)
        sink.write(b)
        first = b.last_offset + 1
    written = data_files(tmp_path)
    again = ParquetSink(LocalStore(tmp_path))
    for b in batches[1:]:
        again.begin(b)
        again.write(b)
    assert data_files(tmp_path) == written


def test_the_cap_evicts_the_same_whole_batches_running_and_rebuilt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    running = Deduplicator(store, 86_400, max_ids=250)
    first = 0
    for values in _history(8, 100, 12):
        b = batch(values, first)
        decision = running.decide(b)
        rebuilt = Deduplicator(store, 86_400, max_ids=250).decide(b)
        assert decision.dropped == rebuilt.dropped
        assert (decision.keep is None) == (rebuilt.keep is None)
        if decision.keep is not None and rebuilt.keep is not None:
            assert np.array_equal(decision.keep, rebuilt.keep)
        running.record(b)
        running.written(b)
        state = running._states[("ev", 0)]
        assert sum(s.count for s in state.spans) <= 250 and len(state.ids) == sum(s.count for s in state.spans)
        first = b.last_offset + 1
    # The last batch resends 12 events of each of the 7 before it; the cap holds fewer than 7 batches' ids,
    # so some of those resends are archived again (and the state still ended identical both ways).
    assert 0 < decision.dropped < 7 * 12


def test_ids_match_uuid_and_slow_path() -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)] + [str(uuid.UUID(int=i)) for i in range(5)]
    keys = uuid_keys(pa.chunked_array([pa.array(ids[:400]), pa.array(ids[400:])]))
    assert keys.valid.all()
    assert [(int(h) << 64) | int(lo) for h, lo in zip(keys.hi, keys.lo, strict=True)] == [uuid.UUID(i).int for i in ids]
    odd = uuid_keys(pa.array([ids[0], ids[0].upper(), "x", ids[1].replace("-", ""), ids[2]]))
    assert odd.valid.tolist() == [True, True, False, False, True]  # uppercase is the same UUID
    assert int(odd.hi[4]) << 64 | int(odd.lo[4]) == uuid.UUID(ids[2]).int


def test_sorted_ids_exact_when_the_low_halves_collide() -> None:
    # Ids that differ only in their high 64 bits (a client could send such): every lookup is a lo collision.
    his = np.array([5, 1, 9, 3, 7], np.uint64)
    los = np.full(5, 42, np.uint64)
    seen = SortedIds.build(his, los, np.zeros(5, np.uint32))
    q_hi = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], np.uint64)
    q_lo = np.full(len(q_hi), 42, np.uint64)
    pos, found = seen.locate(q_hi, q_lo)
    assert found.tolist() == [h in {1, 3, 5, 7, 9} for h in range(11)]
    new = ~found
    seen.insert(pos[new], q_hi[new], q_lo[new], 1)
    assert seen.hi.tolist() == list(range(11)) and seen.seq.tolist().count(1) == 6
    order = sort_order(q_hi, q_lo)
    assert order.tolist() == list(range(11))
    merged = SortedIds(seen.hi, seen.lo, seen.seq)
    seen.drop_before(1)
    assert seen.hi.tolist() == [0, 2, 4, 6, 8, 10]
    # Adding a batch while dropping the older ones gives what dropping then adding gives.
    extra_hi, extra_lo = np.array([3, 4], np.uint64), np.array([42, 43], np.uint64)
    pos, found = merged.locate(extra_hi, extra_lo)
    merged.insert(pos, extra_hi, extra_lo, 2, drop_before=1)
    pos, _ = seen.locate(extra_hi, extra_lo)
    seen.insert(pos, extra_hi, extra_lo, 2)
    assert found.tolist() == [True, False]
    assert (merged.hi.tolist(), merged.lo.tolist(), merged.seq.tolist()) == \
        (seen.hi.tolist(), seen.lo.tolist(), seen.seq.tolist())


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())

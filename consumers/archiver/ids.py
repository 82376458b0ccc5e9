"""Event ids as exact 128-bit integer keys, and a sorted set of them (vectorised numpy, no loop per row).

``event_id`` is UUID text: 36 characters, hex digits with hyphens at 8, 13,
18 and 23 (the gateway writes the canonical lowercase form). Each id becomes
two uint64, ``hi`` and ``lo`` (the UUID's 16 bytes, big-endian): 16 bytes
instead of ~40 for the string, and integer comparisons. The mapping is the
UUID's value, one-to-one, so equal keys mean the same UUID, as ClickHouse's
UUID column sees it (letter case aside): there is no hash and no false match
that could drop a distinct event. An id in any other form (never produced by
the gateway) is marked not ``valid``; the archiver keeps such rows and never
deduplicates them.

Keys are ordered by ``(lo, hi)``: ``lo`` holds the random bits of both UUIDv4
and UUIDv7 (a v7 ``hi`` is mostly a millisecond timestamp, shared by every id
minted in the same millisecond), so runs of equal ``lo`` are rare and short,
and a single ``searchsorted`` on ``lo`` settles almost every lookup.
"""

from __future__ import annotations

import binascii
import re
import uuid
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64 = npt.NDArray[np.uint64]
T = TypeVar("T", bound=np.generic)
_HYPHENS = (8, 13, 18, 23)
_HYPHENATED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MASK64 = (1 << 64) - 1


class Keys(NamedTuple):
    hi: U64
    lo: U64
    valid: npt.NDArray[np.bool_]


def uuid_keys(column: pa.ChunkedArray | pa.Array) -> Keys:
    """The key of every row's id, in row order."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_chunk_keys(chunk) for chunk in chunks if len(chunk)]
    if not parts:
        return Keys(np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.bool_))
    if len(parts) == 1:
        return parts[0]
    return Keys(*(np.concatenate(field) for field in zip(*parts, strict=True)))


def _chunk_keys(array: pa.Array) -> Keys:
    n = len(array)
    if array.null_count == 0 and array.type == pa.string():
        offsets = np.frombuffer(array.buffers()[1], np.int32, n + 1, array.offset * 4)
        if bool((np.diff(offsets) == 36).all()):  # one contiguous run of 36-byte texts
            data = memoryview(array.buffers()[2])[offsets[0]:offsets[0] + 36 * n]  # type: ignore[index]
            keys = _decode_canonical(bytes(data), n)
            if keys is not None:
                return keys
    return _decode_each(array.to_pylist())


def _decode_canonical(text: bytes, n: int) -> Keys | None:
    """Keys of n concatenated 36-byte hyphenated ids, or None if any is in another form.

    C-level bytes operations over the whole batch (~80 ms per million ids).
    """
    rows = np.frombuffer(text, np.uint8).reshape(n, 36)
    if not all(bool((rows[:, i] == 0x2D).all()) for i in _HYPHENS):
        return None
    plain = text.translate(None, b"-")
    if len(plain) != 32 * n:  # a hyphen elsewhere than the four fixed places
        return None
    try:
        raw = binascii.unhexlify(plain)  # strict: hex digits only, no whitespace
    except binascii.Error:
        return None
    words = np.frombuffer(raw, ">u8").reshape(n, 2)
    return Keys(words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64), np.ones(n, np.bool_))


def _decode_each(values: list[str | None]) -> Keys:
    """Slow path, one row at a time: only for batches holding an id in another form."""
    ints = [uuid.UUID(v).int if v is not None and _HYPHENATED.fullmatch(v) else -1 for v in values]
    valid = np.array([i >= 0 for i in ints], np.bool_)
    hi = np.array([i >> 64 if i >= 0 else 0 for i in ints], np.uint64)
    lo = np.array([i & _MASK64 if i >= 0 else 0 for i in ints], np.uint64)
    return Keys(hi, lo, valid)


def to_binary(hi: U64, lo: U64) -> pa.FixedSizeBinaryArray:
    """Keys as 16-byte UUIDs (big-endian), the form the per-batch id files store."""
    words = np.empty((len(hi), 2), ">u8")
    words[:, 0], words[:, 1] = hi, lo
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(hi), [None, pa.py_buffer(words.tobytes())])


def from_binary(array: pa.Array) -> tuple[U64, U64]:
    """Inverse of ``to_binary``."""
    words = np.frombuffer(array.buffers()[1], ">u8", 2 * len(array), array.offset * 16).reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def sort_order(hi: U64, lo: U64) -> npt.NDArray[np.intp]:
    """Row order by (lo, hi, row): equal keys stay in row (offset) order.

    An unstable sort on ``lo`` alone (a stable or two-key sort of random
    64-bit keys costs 4-8x more); the rare runs of equal ``lo`` are then put
    in (lo, hi, row) order in the slots they already occupy.
    """
    order = np.argsort(lo)
    ordered = lo[order]
    same = ordered[1:] == ordered[:-1]
    if same.any():
        in_run = np.zeros(len(lo), np.bool_)
        in_run[1:] = same
        in_run[:-1] |= same
        slots = np.flatnonzero(in_run)
        rows = order[slots]
        order[slots] = rows[np.lexsort((rows, hi[rows], lo[rows]))]
    return order


def first_copies(hi: U64, lo: U64) -> npt.NDArray[np.bool_]:
    """For keys already in (lo, hi) order: True where a key differs from the one before it."""
    first = np.ones(len(lo), np.bool_)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return first


class SortedIds:
    """Distinct keys sorted by (lo, hi), each tagged with the sequence number of the batch that added it.

    Memory: 20 bytes per id (8 + 8 + a uint32 tag); ``insert`` briefly holds a
    second copy. The tag lets whole batches be dropped (oldest first) with one
    mask, and lets a lookup ignore batches older than a given one.
    """

    def __init__(self, hi: U64 | None = None, lo: U64 | None = None,
                 seq: npt.NDArray[np.uint32] | None = None) -> None:
        self.hi = hi if hi is not None else np.empty(0, np.uint64)
        self.lo = lo if lo is not None else np.empty(0, np.uint64)
        self.seq = seq if seq is not None else np.empty(0, np.uint32)

    @classmethod
    def build(cls, hi: U64, lo: U64, seq: npt.NDArray[np.uint32]) -> SortedIds:
        order = sort_order(hi, lo)
        return cls(hi[order], lo[order], seq[order])

    def __len__(self) -> int:
        return len(self.lo)

    def locate(self, hi: U64, lo: U64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """For each query key: where it is or would be inserted (first position not below it), and whether present."""
        size = len(self.lo)
        pos = np.searchsorted(self.lo, lo)
        found = np.zeros(len(lo), np.bool_)
        if size == 0:
            return pos, found
        cand = np.flatnonzero(self.lo[np.minimum(pos, size - 1)] == lo)
        if len(cand):
            start, end = pos[cand], np.searchsorted(self.lo, lo[cand], side="right")
            at = _bisect_hi(self.hi, hi[cand], start, end.copy())
            pos[cand] = at
            found[cand] = (at < end) & (self.hi[np.minimum(at, size - 1)] == hi[cand])
        return pos, found

    def insert(self, pos: npt.NDArray[np.intp], hi: U64, lo: U64, seq: int, drop_before: int = 0) -> None:
        """Add keys (in (lo, hi) order, positions from ``locate``) as batch ``seq``; drop batches below ``drop_before``.

        One linear merge: each old key that stays moves up by the number of new
        keys placed before it (a bincount and a cumulative sum), computed once
        for the three arrays.
        """
        if seq < drop_before:
            self.drop_before(drop_before)
            return
        old = (self.hi, self.lo, self.seq)
        keep = self.seq >= drop_before
        if not keep.all():
            pos = np.concatenate(([0], np.cumsum(keep)))[pos]  # positions among the keys that stay
            old = (self.hi[keep], self.lo[keep], self.seq[keep])
        size, added = len(old[0]), len(lo)
        new_at = pos + np.arange(added)
        old_at = np.arange(size) + np.cumsum(np.bincount(pos, minlength=size + 1))[:size]
        self.hi = _merge(old[0], hi, old_at, new_at)
        self.lo = _merge(old[1], lo, old_at, new_at)
        self.seq = _merge(old[2], np.full(added, seq, np.uint32), old_at, new_at)

    def drop_before(self, seq: int) -> None:
        """Forget the keys of every batch numbered below ``seq``."""
        keep = self.seq >= seq
        if not keep.all():
            self.hi, self.lo, self.seq = self.hi[keep], self.lo[keep], self.seq[keep]


def _merge(old: npt.NDArray[T], new: npt.NDArray[T], old_at: npt.NDArray[np.intp],
           new_at: npt.NDArray[np.intp]) -> npt.NDArray[T]:
    out: npt.NDArray[T] = np.empty(len(old) + len(new), old.dtype)
    out[new_at] = new
    out[old_at] = old
    return out


def _bisect_hi(hi: U64, query: U64, start: npt.NDArray[np.intp], end: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Vectorised lower bound of ``query`` in ``hi[start:end]`` (each range sorted); one round per halving."""
    active = np.flatnonzero(start < end)
    while len(active):
        mid = (start[active] + end[active]) // 2
        below = hi[mid] < query[active]
        start[active] = np.where(below, mid + 1, start[active])
        end[active] = np.where(below, end[active], mid)
        active = active[start[active] < end[active]]
    return start

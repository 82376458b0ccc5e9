"""The fallback store on local disk (the embedded default: ``<state dir>/fallback``).

Layout under the root: ``pending/<name>`` holds objects nobody drains;
``claimed/<name>~<owner>~<lease end ms>`` holds the ones a drainer took. A put
writes a dot-prefixed temp file, fsyncs it, renames it into ``pending/`` and
fsyncs the directory, so a 2xx survives a power loss. A claim is a rename out of
``pending/``: of two drainers only one rename finds the file. A claim whose lease
ended is taken over by renaming it to the new owner's name, which again only one
drainer can do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

from gateway.fallback.objects import Pending, parse_name
from gateway.fallback.store import Claim

_SEP = "~"


class LocalFallbackStore:
    def __init__(self, root: Path, min_free_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self.uri = root.as_uri()
        self.pending_dir = root / "pending"
        self.claimed_dir = root / "claimed"
        self.min_free_bytes = min_free_bytes

    def _dirs(self) -> None:
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.claimed_dir.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        self._dirs()
        path = self.pending_dir / name
        tmp = self.pending_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"  # dot: never listed as pending
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.pending_dir)  # the rename itself survives a power loss

    def pending(self) -> list[Pending]:
        found = [parse_name(name) for name in _names(self.pending_dir)]
        found += [parse_name(name.split(_SEP, 1)[0]) for name in _names(self.claimed_dir)]
        return sorted(p for p in found if p is not None)

    def claim(self, name: str, owner: str, lease_s: float) -> Claim | None:
        self._dirs()
        target = self.claimed_dir / _claimed_name(name, owner, lease_s)
        try:
            os.rename(self.pending_dir / name, target)
            return Claim(name, owner, target.name)
        except FileNotFoundError:
            pass  # claimed by another drainer, or drained: take it over if its lease ended
        now_ms = time.time() * 1000
        for held in _names(self.claimed_dir):
            base, _, rest = held.partition(_SEP)
            if base != name or int(rest.rpartition(_SEP)[2] or 0) > now_ms:
                continue
            try:
                os.rename(self.claimed_dir / held, target)
                return Claim(name, owner, target.name)
            except FileNotFoundError:
                return None  # another drainer took it over first
        return None

    def read(self, claim: Claim) -> bytes | None:
        try:
            return (self.claimed_dir / claim.token).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, claim: Claim) -> None:
        with contextlib.suppress(FileNotFoundError):  # gone: our lease ran out and another drainer finished it
            (self.claimed_dir / claim.token).unlink()
            _fsync_dir(self.claimed_dir)

    def release(self, claim: Claim) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.claimed_dir / claim.token, self.pending_dir / claim.name)

    def sweep(self) -> int:
        """Temp files of puts killed halfway (older than an hour: a put takes seconds, and another gateway
        sharing the directory may be writing one now)."""
        cutoff, removed = time.time() - 3600, 0
        for name in os.listdir(self.pending_dir) if self.pending_dir.is_dir() else []:
            path = self.pending_dir / name
            with contextlib.suppress(FileNotFoundError):
                if name.startswith(".") and name.endswith(".tmp") and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def check(self) -> str | None:
        try:
            self._dirs()
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            return f"fallback directory {self.root}: {exc.strerror or exc}"
        if free < self.min_free_bytes:
            return f"fallback directory {self.root}: {free // 2**20} MiB free"
        return None


def _claimed_name(name: str, owner: str, lease_s: float) -> str:
    return f"{name}{_SEP}{owner}{_SEP}{int((time.time() + lease_s) * 1000)}"


def _names(directory: Path) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if not n.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

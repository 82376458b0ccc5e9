"""Where archive objects go: a local directory (atomic rename) or S3 (one PUT or a multipart upload).

Both make a written object visible whole or not at all, and ``put`` returns
only when it is durable, which is what lets the runtime commit offsets after
``write`` returns. ``list`` returns the keys under a prefix, sorted.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import pyarrow as pa

from evpipe.s3 import s3_client

log = logging.getLogger("evpipe.archiver")


class Store(Protocol):
    uri: str

    def put(self, key: str, data: pa.Buffer | bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[str]: ...

    def list_sized(self, prefix: str) -> builtins.list[tuple[str, int]]:
        """(key, size in bytes) of the objects whose key starts with ``prefix``, in key order."""
        ...

    def open(self, key: str) -> pa.NativeFile:
        """A readable file of one object (a local file is read in place; an S3 object is fetched whole)."""
        ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri()

    def put(self, key: str, data: pa.Buffer | bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Dot-prefixed temp file: dataset readers skip it if a crash leaves it behind.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            f.write(memoryview(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power loss
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        """Keys of the files whose key starts with ``prefix``; temp files of unfinished puts are left out."""
        return [key for key, _size in self.list_sized(prefix)]

    def list_sized(self, prefix: str) -> builtins.list[tuple[str, int]]:
        head, _, _ = prefix.rpartition("/")
        base = self.root / head
        if not base.is_dir():
            return []
        found = []
        for directory, _dirs, files in os.walk(base):
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix) and not name.startswith("."):
                    try:
                        found.append((key, (self.root / key).stat().st_size))
                    except FileNotFoundError:  # removed between the walk and the stat
                        continue
        return sorted(found)

    def open(self, key: str) -> pa.NativeFile:
        return pa.memory_map(str(self.root / key))

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Delete temp files (``.<name>.<hex>.tmp``) that a killed ``put`` left behind; returns how many.

        Only files last modified more than ``older_than_s`` ago go: another
        archiver sharing the directory may be writing one right now, and a put
        takes seconds, not an hour. (An age works across hosts sharing the
        directory, where the writer's process id would mean nothing.)
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                path = Path(directory) / name
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:  # renamed or removed meanwhile by its writer
                    continue
        if removed:
            log.info("removed %d stale temp files under %s", removed, self.root)
        return removed


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str, multipart_threshold: int,
                 timeout_s: float = 30.0) -> None:
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # Short timeouts: a dead endpoint must fail fast so the runtime pauses and retries.
        self.client: Any = s3_client(endpoint_url, connect_timeout_s=min(5.0, timeout_s), read_timeout_s=timeout_s)
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold,
                                       use_threads=False)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: pa.Buffer | bytes) -> None:
        if len(data) < self.transfer.multipart_threshold:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=pa.BufferReader(data))
        else:  # large files go up in parts (and a failed part is retried alone)
            self.client.upload_fileobj(pa.BufferReader(data), self.bucket, self._key(key), Config=self.transfer)

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            if (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise
        data: bytes = response["Body"].read()
        return data

    def list(self, prefix: str) -> list[str]:
        return [key for key, _size in self.list_sized(prefix)]

    def list_sized(self, prefix: str) -> builtins.list[tuple[str, int]]:
        found: builtins.list[tuple[str, int]] = []
        start = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            found.extend((item["Key"][start:], int(item["Size"])) for item in page.get("Contents", []))
        return sorted(found)

    def open(self, key: str) -> pa.NativeFile:
        data = self.get(key)
        if data is None:
            raise FileNotFoundError(f"{self.uri}/{key} is gone")
        return pa.BufferReader(data)


def open_store(uri: str, endpoint_url: str = "", multipart_threshold: int = 64 * 1024 * 1024,
               timeout_s: float = 30.0) -> Store:
    """``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"ARCHIVE_URI {uri!r} has no bucket: use s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path, endpoint_url, multipart_threshold, timeout_s)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme:
        raise ValueError(f"ARCHIVE_URI {uri!r}: unsupported scheme {parsed.scheme!r} (use s3://, file:// or a path)")
    return LocalStore(Path(uri).resolve())

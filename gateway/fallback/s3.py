"""The fallback store on S3 (e.g. the archive bucket under ``fallback/``).

Objects are ``<prefix>/pending/<name>``: a PUT that S3 acknowledged is durable.
A claim is a second object, ``<prefix>/claims/<name>``, created with a
conditional PUT (``If-None-Match: *``): of two drainers only one creates it, the
other gets 412. A claim older than its lease (the claim's Last-Modified against
the server's own clock, so host clocks do not matter) is taken over with a PUT
conditional on the claim's ETag (``If-Match``), which again only one drainer
wins. Done: the object is deleted, then its claim; a claim left without its
object (a drainer died between the two) is removed once its lease is over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
from typing import Any

from evpipe.s3 import s3_client
from gateway.fallback.objects import Pending, parse_name
from gateway.fallback.store import Claim

_PENDING = "pending/"
_CLAIMS = "claims/"


class S3FallbackStore:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str = "", timeout_s: float = 5.0) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # Short timeouts: a hung endpoint must turn into a 503 within the request's budget, not hold it.
        self.client: Any = s3_client(endpoint_url, connect_timeout_s=timeout_s, read_timeout_s=timeout_s,
                                     max_pool_connections=32)

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}/{kind}{name}" if self.prefix else f"{kind}{name}"

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(_PENDING, name), Body=data)

    def pending(self) -> list[Pending]:
        return sorted(p for p in (parse_name(n) for n in self._list(_PENDING)) if p is not None)

    def _list(self, kind: str) -> list[str]:
        start = len(self._key(kind))
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(kind)):
            names += [item["Key"][start:] for item in page.get("Contents", [])]
        return names

    def claim(self, name: str, owner: str, lease_s: float) -> Claim | None:
        key = self._key(_CLAIMS, name)
        body, meta = owner.encode(), {"lease-s": str(lease_s)}
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=meta, IfNoneMatch="*")
            return Claim(name, owner, answer["ETag"])
        except Exception as exc:
            if not _precondition_failed(exc):
                raise
        held = self._stale(key)
        if held is None:
            return None
        for etag in (held, held.strip('"')):  # Ceph RGW compares If-Match without the quotes
            try:
                answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=meta, IfMatch=etag)
                return Claim(name, owner, answer["ETag"])
            except Exception as exc:
                if not _precondition_failed(exc):
                    raise
        return None  # another drainer took it over first

    def _stale(self, key: str) -> str | None:
        """The ETag of a claim whose lease is over, by the server's clock; None while it holds (or is gone)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise
        date = head["ResponseMetadata"]["HTTPHeaders"].get("date")
        now = email.utils.parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)
        lease_s = float(head.get("Metadata", {}).get("lease-s", "60"))
        # + 1 s: both times are whole seconds, so a fresh claim can look up to a second old.
        return str(head["ETag"]) if (now - head["LastModified"]).total_seconds() > lease_s + 1 else None

    def read(self, claim: Claim) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(_PENDING, claim.name))
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise
        data: bytes = answer["Body"].read()
        return data

    def delete(self, claim: Claim) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(_PENDING, claim.name))
        self.client.delete_object(Bucket=self.bucket, Key=self._key(_CLAIMS, claim.name))

    def release(self, claim: Claim) -> None:
        with contextlib.suppress(Exception):  # a claim left behind only waits out its lease
            self.client.delete_object(Bucket=self.bucket, Key=self._key(_CLAIMS, claim.name))

    def sweep(self) -> int:
        """Remove claims whose object is gone and whose lease is over; returns how many."""
        pending = set(self._list(_PENDING))
        removed = 0
        for name in self._list(_CLAIMS):
            if name not in pending and self._stale(self._key(_CLAIMS, name)) is not None:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(_CLAIMS, name))
                removed += 1
        return removed

    def check(self) -> str | None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 (any failure: not ready, and why)
            return f"fallback bucket {self.bucket}: {exc}"
        return None


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    if code in ("404", "NoSuchKey", "NotFound"):
        return 404
    return int(status) if status else None


def _precondition_failed(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return _status(exc) == 412 or response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")

"""Where a process reads its tracking plans: a directory, or ``s3://bucket/prefix``.

Both answer the same two questions: a cheap fingerprint of the plan files (taken every few seconds to
see whether anything changed) and the whole set, loaded and compiled (see ``evpipe.plans.load``). On S3
the plan files are the ``*.yaml``, ``*.yml`` and ``*.json`` objects directly under the prefix (not in
"subdirectories", as in a directory), and the fingerprint is their names, ETags and LastModified times
from one listing: no object is read unless the listing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evpipe.plans.load import SUFFIXES, PlanSet, fingerprint, load_directory, one_per_source, parse_document
from evpipe.plans.model import PlanError, parse_plan

Fingerprint = tuple[tuple[str, object, object], ...]


class PlanSource(Protocol):
    @property
    def location(self) -> str: ...

    def fingerprint(self) -> Fingerprint:
        """Changes whenever a plan file is added, removed or changed; raises PlanError when unreadable."""
        ...

    def load(self) -> PlanSet:
        """Every plan, checked and compiled; raises PlanError at the first bad one."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    directory: Path

    @property
    def location(self) -> str:
        return str(self.directory)

    def fingerprint(self) -> Fingerprint:
        try:
            return fingerprint(self.directory)
        except OSError as exc:
            raise PlanError(str(self.directory), "", f"cannot list: {exc}") from None

    def load(self) -> PlanSet:
        try:
            return load_directory(self.directory)
        except OSError as exc:
            raise PlanError(str(self.directory), "", f"cannot read: {exc}") from None


class S3Source:
    """Plan files under ``s3://bucket/prefix``, read with the project's S3 client (evpipe/s3.py)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def fingerprint(self) -> Fingerprint:
        return tuple((name, item["ETag"], item["LastModified"].isoformat()) for name, item in self._listing())

    def load(self) -> PlanSet:
        listing = self._listing()
        before = tuple((name, item["ETag"], item["LastModified"].isoformat()) for name, item in listing)
        plans = one_per_source(parse_plan(parse_document(name, self._read(item["Key"], name)), name)
                               for name, item in listing)
        return PlanSet(plans, before)

    def _listing(self) -> list[tuple[str, dict[str, Any]]]:
        """(file name, listing entry) of each plan object directly under the prefix, by name."""
        from botocore.exceptions import BotoCoreError, ClientError

        start = f"{self.prefix}/" if self.prefix else ""
        found: list[tuple[str, dict[str, Any]]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"][len(start):]
                    if "/" not in name and name.endswith(SUFFIXES):
                        found.append((name, item))
        except (BotoCoreError, ClientError) as exc:
            raise PlanError(self.location, "", f"cannot list: {_short(exc)}") from None
        return sorted(found, key=lambda entry: entry[0])

    def _read(self, key: str, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise PlanError(name, "", f"cannot read {self.location}/{name}: {_short(exc)}") from None
        try:
            text: str = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(name, "", f"cannot read: {exc}") from None
        return text


def open_source(location: str, s3_endpoint_url: str = "", timeout_s: float = 10.0) -> PlanSource | None:
    """The source a setting names (a directory or ``s3://bucket/prefix``); None for an empty setting."""
    if not location:
        return None
    if not location.startswith("s3://"):
        return DirectorySource(Path(location))
    bucket, _, prefix = location[len("s3://"):].partition("/")
    if not bucket:
        raise PlanError(location, "", "expected s3://bucket/prefix")
    from evpipe.s3 import s3_client

    return S3Source(bucket, prefix, s3_client(s3_endpoint_url, timeout_s, timeout_s))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."

"""The fallback store's contract, and the factory that opens one from GATEWAY_FALLBACK_URI.

Every method blocks (file system or HTTP): callers on the event loop run them in a thread.

The claim is what keeps two drainers from producing the same object: taking it
is one atomic step that only one caller can win (a rename on local disk, a
conditional PUT on S3). A claim holds for ``lease_s``; a drainer that died
leaves a claim that any drainer may take over once the lease is over, again in
one atomic step. A drainer gives an object up by releasing its claim, and is
done with it by deleting it (object first, claim after).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from gateway.fallback.objects import Pending


class StoreUnavailable(Exception):
    """The fallback store did not take a write (or answer) in time: the request is answered 503."""


@dataclass(frozen=True)
class Claim:
    """A drainer's hold on one object; ``token`` is the store's proof of it (a path, an ETag)."""

    name: str
    owner: str
    token: str


class FallbackStore(Protocol):
    uri: str

    def put(self, name: str, data: bytes) -> None:
        """Store one object; returns only once it is durable (raises on any failure)."""

    def pending(self) -> list[Pending]:
        """Every object not yet drained (claimed ones too), oldest first."""

    def claim(self, name: str, owner: str, lease_s: float) -> Claim | None:
        """Take the object for ``lease_s``; None when another drainer holds it (or, on local disk, it is
        gone: on S3 a claim on an object already drained is possible, and its ``read`` is None)."""

    def read(self, claim: Claim) -> bytes | None:
        """The claimed object's bytes; None when it is gone (drained by a drainer whose lease ran out)."""

    def delete(self, claim: Claim) -> None:
        """Remove a drained object and its claim."""

    def release(self, claim: Claim) -> None:
        """Give the object back undrained, for any drainer to take at once."""

    def check(self) -> str | None:
        """None when the store can take writes, else why not (readiness while the broker is down)."""

    def sweep(self) -> int:
        """Remove what finished drains left behind (claims whose object is gone); returns how many."""


def fallback_uri(configured: str | None, state_dir: Path) -> str | None:
    """GATEWAY_FALLBACK_URI as meant: unset is ``<state dir>/fallback``, empty is off (None)."""
    if configured is None:
        return str(state_dir.resolve() / "fallback")
    return configured.strip() or None


def open_store(uri: str, endpoint_url: str = "", timeout_s: float = 5.0) -> FallbackStore:
    """``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"GATEWAY_FALLBACK_URI {uri!r} has no bucket: use s3://bucket/prefix")
        from gateway.fallback.s3 import S3FallbackStore  # boto3 only where S3 is used

        return S3FallbackStore(parsed.netloc, parsed.path, endpoint_url, timeout_s)
    from gateway.fallback.local import LocalFallbackStore

    if parsed.scheme == "file":
        return LocalFallbackStore(Path(parsed.path))
    if parsed.scheme:
        raise ValueError(f"GATEWAY_FALLBACK_URI {uri!r}: unsupported scheme {parsed.scheme!r} "
                         "(use s3://, file:// or a path)")
    return LocalFallbackStore(Path(uri).resolve())

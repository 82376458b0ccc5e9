"""Request bodies spooled to disk as they arrive, decoded from their Content-Encoding, under a size cap.

An insert may be gigabytes: the body never sits in memory whole. The engine
reads the spooled file with ``INSERT ... FROM INFILE``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from evpipe.chserver.protocol import ServerError

HEAD_BYTES = 65536  # what is kept in memory to read the statement at the start of a body


def decoder(encoding: str | None) -> Callable[[bytes], bytes]:
    """A streaming decoder for a Content-Encoding (identity, gzip, deflate, zstd, lz4, br)."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return lambda chunk: chunk
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if name == "deflate":
        return zlib.decompressobj().decompress
    if name == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress
    if name == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor().decompress
    if name == "br":
        try:
            import brotli
        except ImportError:
            raise ServerError(48, f"Content-Encoding {name} is not supported here: send gzip, deflate, zstd "
                                  "or lz4", 415) from None
        return brotli.Decompressor().process  # type: ignore[no-any-return]
    raise ServerError(48, f"unknown Content-Encoding {name[:40]!r}: send gzip, deflate, zstd, lz4 or none", 415)


@dataclass
class Spooled:
    path: Path
    size: int
    head: bytes  # the first HEAD_BYTES, for the statement an INSERT body starts with


async def spool(stream: AsyncIterator[bytes], encoding: str | None, directory: Path, limit: int) -> Spooled:
    decode = decoder(encoding)
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="body-", dir=directory)
    size, head = 0, bytearray()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in stream:
                try:
                    data = decode(chunk)
                except Exception as exc:  # noqa: BLE001 - each codec has its own error type: a corrupt body
                    raise ServerError(36, f"cannot decode the request body as {encoding}: {exc}", 400) from None
                size += len(data)
                if size > limit:
                    raise ServerError(36, f"request body over {limit} bytes (CLICKHOUSE_MAX_BODY_BYTES)", 413)
                if len(head) < HEAD_BYTES:
                    head += data[:HEAD_BYTES - len(head)]
                out.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Spooled(Path(name), size, bytes(head))


def tail_copy(source: Spooled, offset: int) -> Path:
    """A new file holding ``source`` from ``offset`` on (the rows after an INSERT statement in the body)."""
    fd, name = tempfile.mkstemp(prefix="data-", dir=source.path.parent)
    with os.fdopen(fd, "wb") as out, open(source.path, "rb") as src:
        src.seek(offset)
        while block := src.read(1 << 20):
            out.write(block)
    return Path(name)


@contextlib.contextmanager
def removed_after(*paths: Path | None) -> Iterator[None]:
    try:
        yield
    finally:
        for path in paths:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()

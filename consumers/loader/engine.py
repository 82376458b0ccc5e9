"""Opening ClickHouse, minding the embedded engine's one-process lock.

chdb refuses a data directory another process holds, and says why only on
file descriptor 2 (the exception reads "Error initializing EmbeddedServer").
:func:`open_client` captures that text to tell a locked directory from other
failures, and can wait for a short-lived holder (an `evpipe query` run) to go.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from clickhouse_connect.driver.client import Client

from evpipe.clickhouse import connect


class EngineLocked(RuntimeError):
    """Another process holds the embedded engine's data directory."""


def is_locked(error: BaseException | str) -> bool:
    text = str(error)
    return "Cannot lock file" in text or "Another server instance" in text


@contextlib.contextmanager
def engine_stderr() -> Iterator[list[str]]:
    """Capture what the embedded engine prints on file descriptor 2 while opening."""
    captured: list[str] = []
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            captured.append(log.read().decode(errors="replace"))


def open_client(url: str, state_dir: Path, wait_s: float = 0.0) -> Client:
    """Connect; a locked embedded engine is retried for ``wait_s`` seconds, then raises EngineLocked."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            with engine_stderr() as captured:
                return connect(url, state_dir)
        except Exception as exc:
            if not (is_locked(exc) or is_locked("".join(captured))):
                raise
            if time.monotonic() >= deadline:
                raise EngineLocked(f"the embedded ClickHouse engine under {url or state_dir} is open in another "
                                   "process (it allows one)") from None
        time.sleep(delay)
        delay = min(delay * 2, 2.0)

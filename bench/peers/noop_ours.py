"""Child process: our consumer runtime with a no-op parse step and a no-op sink (``python -m bench.peers.noop_ours``).

The peer of Arroyo's ``RunTask(no-op) -> CommitOffsets``: consume, cut batches, hand them to the sink,
commit. The parse step keeps only the offsets (Arroyo's no-op function decodes nothing either).

With ``--record DIR`` the sink keeps the runtime's sink contract the cheapest way there is, so that
a kill -9 test can count what each offset's side effect amounted to: ``begin`` records the batch's
boundaries (``pending_end`` reads them back after a restart) and ``write`` stores the batch's offsets
in a file named by the batch identity, replaced whole (a rewrite of the same batch leaves one file).
Each ``write`` call is also appended to ``writes.log``, so rewrites after kills are counted too.
Files are written with ``os.write`` and renamed: a kill -9 loses nothing the kernel already holds
(no fsync: the test kills processes, not the machine).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from consumers.runtime import Batch, ConsumerLoop, ConsumerSettings
from consumers.runtime.parse import Parsed
from consumers.runtime.process import run_until_signalled


def offsets_only(offsets: list[int], values: list[bytes]) -> Parsed[list[int]]:
    """The no-op parse step: every message is a row, its offset the whole row."""
    return Parsed(table=offsets, poison=[], offsets=offsets)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class NoopSink:
    """Accepts every batch; with a directory, records batch boundaries and offsets (see the module doc)."""

    def __init__(self, record: Path | None) -> None:
        self.record = record
        self._log = -1
        if record is not None:
            (record / "begun").mkdir(parents=True, exist_ok=True)
            (record / "done").mkdir(parents=True, exist_ok=True)
            self._log = os.open(record / "writes.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        if self.record is None:
            return None
        try:
            return int((self.record / "begun" / f"{partition}-{start_offset}").read_text())
        except FileNotFoundError:
            return None

    def begin(self, batch: Batch[Any]) -> None:
        if self.record is not None:
            write_atomic(self.record / "begun" / f"{batch.partition}-{batch.first_offset}",
                         str(batch.last_offset).encode())

    def write(self, batch: Batch[Any]) -> None:
        if self.record is None:
            return
        name = f"{batch.partition}-{batch.first_offset}-{batch.last_offset}"
        write_atomic(self.record / "done" / name, "\n".join(map(str, batch.table)).encode())
        os.write(self._log, f"{name}\n".encode())


def watch_first(loop: ConsumerLoop, path: Path) -> None:
    """Write the wall time of the first consumed message to ``path`` (read by the bench)."""
    while not loop.stats.consumed:
        time.sleep(0.002)
    path.write_text(repr(time.time()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--first", type=Path, required=True, help="file to write the first message's time to")
    parser.add_argument("--record", type=Path, help="directory to record batches in (kill tests)")
    args = parser.parse_args()
    # The loader bench's batching (50,000 messages or 0.2 s), and the session the bench uses on Tansu.
    settings = ConsumerSettings(kafka_bootstrap_servers=args.bootstrap, kafka_topic=args.topic,
                                kafka_dlq_topic=f"{args.topic}.dlq", consumer_session_timeout_ms=6000,
                                consumer_batch_max_messages=50_000, consumer_batch_max_age_s=0.2)
    loop = ConsumerLoop(settings, NoopSink(args.record), args.group, [args.topic], parse=offsets_only)
    threading.Thread(target=watch_first, args=(loop, args.first), daemon=True).start()
    run_until_signalled(loop)


if __name__ == "__main__":
    main()

"""Child process: Quix Streams' Parquet file sink into a local directory.

Runs on the interpreter of Quix Streams' own virtual environment (see ``bench/peers/env.py``), so it
imports nothing of evpipe: ``python quix_parquet.py --bootstrap ... --topic ... --group ... --out DIR``.
Quix Streams' defaults except: checkpoints every second or every 50,000 messages (its documented
``commit_interval``/``commit_every``; the default is 5 s), no changelog topics (nothing is stateful),
and the Tansu-friendly consumer settings every consumer in the bench gets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.models.serializers.json import JSONDeserializer
from quixstreams.sinks.community.file.local import LocalFileSink


class FirstMessageJSON(JSONDeserializer):
    """Quix's JSON deserializer that also writes the wall time of the first message to a file."""

    def __init__(self, first: Path) -> None:
        super().__init__()
        self._first: Path | None = first

    def __call__(self, value: bytes, ctx: Any) -> Any:
        if self._first is not None:
            self._first.write_text(repr(time.time()))
            self._first = None
        return super().__call__(value, ctx)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--out", required=True, help="directory (Quix allows only [a-zA-Z0-9 ._/] in it)")
    parser.add_argument("--state", required=True, help="Quix's state directory")
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        commit_interval=1.0, commit_every=50_000, use_changelog_topics=False, state_dir=args.state,
        consumer_extra_config={"fetch.queue.backoff.ms": 10, "session.timeout.ms": 6000}, loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer=FirstMessageJSON(args.first))
    sdf = app.dataframe(topic)
    sdf.sink(LocalFileSink(directory=args.out, format="parquet"))
    app.run()


if __name__ == "__main__":
    main()

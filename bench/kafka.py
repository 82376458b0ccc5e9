"""The Kafka a benchmark runs against: KAFKA_BOOTSTRAP_SERVERS if set, else a throw-away local broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bench_kafka(workdir: Path) -> Iterator[str]:
    """Yield a bootstrap address; a broker started here is stopped on exit, whatever happened."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if bootstrap:
        yield bootstrap
        return
    from evpipe.local.broker import LocalBroker
    from evpipe.local.daemon import free_port

    broker = LocalBroker(workdir / "broker", free_port())
    broker.ensure()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()

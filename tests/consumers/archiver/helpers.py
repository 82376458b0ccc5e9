"""Archiver test helpers: run archivers (in a thread or as processes) and read the archive back."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from consumers.archiver.settings import ArchiverSettings
from schemas.envelope import format_timestamp

REPO = Path(__file__).resolve().parents[3]
HIVE = ds.partitioning(pa.schema([("topic", pa.string()), ("dt", pa.string()), ("hour", pa.string())]),
                       flavor="hive")


def archiver_env(bootstrap: str, topic: str, dlq: str, uri: str, group: str, **extra: str) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq, "ARCHIVE_URI": uri,
        "ARCHIVER_GROUP": group, "CONSUMER_SESSION_TIMEOUT_MS": "6000", "METRICS_PORT": "0",
        "CONSUMER_BATCH_MAX_MESSAGES": "2000", "CONSUMER_BATCH_MAX_AGE_S": "1", "CONSUMER_RETRY_INITIAL_S": "0.2",
        "CONSUMER_RETRY_MAX_S": "2",
    }
    env.update(extra)
    return env


def settings(env: dict[str, str]) -> ArchiverSettings:
    return ArchiverSettings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]


def start_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = os.environ | env | {"PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "evpipe", "archiver"], env=full, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


def read_archive(source: str | Path, filesystem: object | None = None) -> pa.Table:
    dataset = ds.dataset(str(source), format="parquet", partitioning=HIVE, filesystem=filesystem)
    return dataset.to_table()


def assert_placement(table: pa.Table) -> None:
    """Every row sits in the dt=/hour= directory of its received_at."""
    received = table.column("received_at").to_pylist()
    for moment, day, hour in zip(received, table.column("dt").to_pylist(), table.column("hour").to_pylist()):
        moment = moment.astimezone(dt.UTC)
        assert (day, hour) == (f"{moment:%Y-%m-%d}", f"{moment:%H}"), (moment, day, hour)


def resend(value: bytes, later: dt.timedelta) -> bytes:
    """The same event as the gateway writes a client's resend of it: same event_id, a later received_at."""
    event = orjson.loads(value)
    received = dt.datetime.fromisoformat(event["received_at"])
    event["received_at"] = format_timestamp(received + later)
    return orjson.dumps(event)


def with_resends(generated: list[tuple[bytes, bytes, str, dt.datetime]], every: int = 10,
                 lags: tuple[int, ...] = (3, 700)) -> list[tuple[bytes | None, bytes]]:
    """The events as messages, plus a resend of every ``every``-th one ``lag`` messages later (same key).

    A short lag puts the copy in the original's batch, a long one in a later batch.
    """
    out: list[tuple[bytes | None, bytes]] = []
    for i, (key, value, _, _) in enumerate(generated):
        out.append((key, value))
        for lag in lags:
            j = i - lag
            if j >= 0 and j % every == 0:
                out.append((generated[j][0], resend(generated[j][1], dt.timedelta(seconds=lag))))
    return out

"""Archiver throughput against the raw consume-only ceiling measured in the same run.

1. raw consume-only ceiling: a bare confluent-kafka consumer (the runtime's
   consumer config) reads every message and discards it; the faster of 1,000
   and 10,000 messages per consume() call counts;
2. the archiver (consumer runtime -> vectorised parse -> zstd Parquet per
   hour -> durable write -> commit) into a local directory;
3. the same into S3 (Ceph RGW) when one is reachable: S3_ENDPOINT_URL with
   AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the test suite's local Ceph if it runs;
4. for reference: the vectorised parse alone (the writer path's main cost),
   and the naive path it replaces (an ``orjson.loads`` dict per event, then
   ``pyarrow.Table.from_pylist``);
5. tracking plans' typed columns, A/B in the same run: the local-directory
   archiver with the p_ columns of a plan typing both of the events'
   properties (``path`` string, ``ms`` integer), each run twice, alternated
   with the plain one, the faster of each pair counting; and the typed
   columns' computation alone per event, vectorised, and for batches with one
   value of another type (the bisection down to the per-event path).

Rates are timed from the first message consumed to the last one committed, so
the consumer-group join (seconds on Tansu) is left out of all of them. Target:
the local-directory archiver at >= 50% of the raw consume ceiling.

Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a throw-away local Tansu broker.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.kafka import bench_kafka
from bench.loader import PARTITIONS, _produce, _raw_consume, _values, timed_run
from bench.report import write_result
from evpipe.gctune import DEFAULT_GEN0_THRESHOLD, tune_for_throughput

BATCH_MESSAGES = 50_000  # events per file; production files are larger (1M events or 64 MiB)


def _s3_target() -> tuple[str, dict[str, str]] | None:
    """(endpoint, credentials env) of a reachable S3, or None."""
    if os.environ.get("S3_ENDPOINT_URL"):
        return os.environ["S3_ENDPOINT_URL"], {}
    try:
        from evpipe.local.ceph import LocalCeph
        from tests.providers import TEST_S3_PORT, TEST_STATE_DIR

        ceph = LocalCeph(TEST_STATE_DIR, TEST_S3_PORT)
        if not ceph.healthy():
            return None
        creds = ceph.credentials()
    except Exception:  # noqa: BLE001 (deliberate: reported, never swallowed silently)
        return None
    return ceph.endpoint, {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                           "AWS_DEFAULT_REGION": "us-east-1"}


# The plan's typed columns for the bench events' properties ({"path": "/p/N", "ms": N}).
TYPED = (("p_path", "path", "string"), ("p_ms", "ms", "integer"))


def _typed_columns() -> tuple[Any, ...]:
    from schemas.typed import Scalar, TypedColumn

    return tuple(TypedColumn(name, key, Scalar(kind)) for name, key, kind in TYPED)


def _run_archiver(settings: Any, uri: str, n: int, typed: tuple[Any, ...] = ()) -> tuple[float, Any]:
    from consumers.archiver.sink import ParquetSink
    from consumers.archiver.store import open_store
    from consumers.runtime import ConsumerLoop

    sink = ParquetSink(open_store(uri, settings.s3_endpoint_url), settings.archiver_row_group_rows)
    sink.typed_columns = lambda: typed
    loop = ConsumerLoop(settings, sink, settings.archiver_group, [settings.kafka_topic])
    return timed_run(loop.run, loop.stop, loop.stats, n, "archiver"), loop


def _count(uri: str, endpoint: str) -> tuple[int, int]:
    """(rows, distinct event ids) in the archive."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from pyarrow import fs

    if uri.startswith("s3://"):
        filesystem = fs.S3FileSystem(endpoint_override=endpoint, access_key=os.environ["AWS_ACCESS_KEY_ID"],
                                     secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
        source = uri[len("s3://"):]
    else:
        filesystem, source = None, uri
    ids = ds.dataset(source, format="parquet", filesystem=filesystem).to_table(columns=["event_id"])["event_id"]
    return len(ids), len(pc.unique(ids))


def _parse_only(n: int) -> float:
    """Seconds to parse n events in BATCH_MESSAGES batches (as the runtime does): the writer path's main cost."""
    from consumers.runtime.parse import parse_values

    values = _values(min(n, BATCH_MESSAGES))
    offsets = list(range(len(values)))
    rounds = max(1, n // len(values))
    started = time.perf_counter()
    for _ in range(rounds):
        parse_values(offsets, values)
    return (time.perf_counter() - started) * n / (rounds * len(values))


def _typed_only(n: int, other_type: bool) -> float:
    """Seconds to compute the typed columns of n parsed events in BATCH_MESSAGES batches; ``other_type``: one
    event per batch has ``ms`` as a string, which sends the batch down the per-event path."""
    from consumers.runtime.parse import parse_values
    from schemas.typed_arrow import with_typed_columns

    values = _values(min(n, BATCH_MESSAGES))
    if other_type:
        values[0] = values[0].replace(b'\\"ms\\":0', b'\\"ms\\":\\"0\\"')
    table = parse_values(list(range(len(values))), values).table
    typed = _typed_columns()
    rounds = max(1, n // len(values))
    with_typed_columns(table, typed)  # warm: the per-event path's first pa.array imports pandas (once, ~0.2 s)
    started = time.perf_counter()
    for _ in range(rounds):
        out = with_typed_columns(table, typed)
    seconds = (time.perf_counter() - started) * n / (rounds * len(values))
    if other_type and out.column("p_ms").null_count != 1:
        raise RuntimeError("the per-event path did not null the one string ms")
    return seconds


def _naive_parse(n: int) -> float:
    """Seconds for a dict per event (orjson.loads) turned into Arrow: the path vectorised parsing replaces."""
    import orjson
    import pyarrow as pa

    values = _values(min(n, BATCH_MESSAGES))
    rounds = max(1, n // len(values))
    started = time.perf_counter()
    for _ in range(rounds):
        pa.Table.from_pylist([orjson.loads(v) for v in values])
    return (time.perf_counter() - started) * n / (rounds * len(values))


def _s3_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)


def run(quick: bool) -> dict[str, Any]:
    from consumers.archiver.settings import ArchiverSettings
    from evpipe.kafka import create_topics
    from evpipe.settings import KafkaSettings
    n = 300_000 if quick else 1_000_000
    # The consumer processes' collector policy, applied before the baselines too, so they run under it as well.
    tune_for_throughput(DEFAULT_GEN0_THRESHOLD)
    tag = uuid.uuid4().hex[:8]
    topic = f"bench_archiver_{tag}"
    s3 = _s3_target()
    rows: list[dict[str, Any]] = []
    timings: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-archiver-") as tmp, bench_kafka(Path(tmp)) as bootstrap:
        workdir = Path(tmp)
        create_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [topic, f"{topic}.dlq"],
                      partitions=PARTITIONS)
        print(f"producing {n:,} events to {PARTITIONS} partitions ...", flush=True)
        _produce(bootstrap, topic, _values(n))
        print("raw consume-only ceiling ...", flush=True)
        raw = _raw_consume(bootstrap, topic, n)
        consume_s = raw.seconds
        targets = [("local directory", str(workdir / "archive"), "")]
        if s3 is not None:
            endpoint, creds = s3
            os.environ.update(creds)
            os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
            os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
            bucket = f"bench-archiver-{tag}"
            _s3_bucket(endpoint, bucket)
            targets.append(("S3 (Ceph RGW)", f"s3://{bucket}/archive", endpoint))
        # Plans off and on, twice each and alternated, the faster of each pair counting: a lone pair on a
        # shared machine mostly measures which run came first.
        plain_label, typed_label = "local directory", "local directory, typed columns"
        targets[1:1] = [(typed_label, str(workdir / "archive-typed"), ""),
                        (plain_label, str(workdir / "archive-2"), ""),
                        (typed_label, str(workdir / "archive-typed-2"), "")]
        for label, uri, endpoint in targets:
            print(f"archiver -> {label} ...", flush=True)
            gc.collect()  # start each timed run from a clean heap
            settings = ArchiverSettings(
                kafka_bootstrap_servers=bootstrap, kafka_topic=topic, kafka_dlq_topic=f"{topic}.dlq",
                archiver_group=f"bench-archiver-{uuid.uuid4().hex[:8]}", archive_uri=uri,
                s3_endpoint_url=endpoint, metrics_port=0, consumer_session_timeout_ms=6000,
                consumer_batch_max_messages=BATCH_MESSAGES, consumer_batch_max_age_s=0.1,
            )
            seconds, loop = _run_archiver(settings, uri, n, _typed_columns() if "typed" in label else ())
            stored, distinct = _count(uri, endpoint)
            if stored != n or distinct != n:
                raise RuntimeError(f"{label}: archive holds {stored} rows ({distinct} distinct) of {n}")
            if label not in timings or seconds < timings[label][0]:
                timings[label] = (seconds, loop.stats.committed_batches)
        print("parse references ...", flush=True)
        parse_s = _parse_only(n)
        naive_s = _naive_parse(n)
        typed_s, typed_slow_s = _typed_only(n, False), _typed_only(n, True)
    ceiling = n / consume_s
    rows.append({"step": "raw consume-only (ceiling)", "events": n, "seconds": round(consume_s, 2),
                 "events_per_s": round(ceiling), "ratio": 1.0})
    rows.append({"step": "vectorised parse only, pyarrow CPU pool (no Kafka, no write)", "events": n,
                 "seconds": round(parse_s, 2), "events_per_s": round(n / parse_s), "ratio": n / parse_s / ceiling})
    rows.append({"step": "naive: orjson.loads per event -> Table.from_pylist, 1 thread", "events": n,
                 "seconds": round(naive_s, 2), "events_per_s": round(n / naive_s), "ratio": n / naive_s / ceiling})
    for label, seconds in (("typed columns only, vectorised (2 properties)", typed_s),
                           ("typed columns only, one value of another type per 50,000-event batch", typed_slow_s)):
        rows.append({"step": label, "events": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
                     "ratio": n / seconds / ceiling, "us_per_event": round(seconds / n * 1e6, 3)})
    for label, (seconds, batches) in timings.items():
        rows.append({"step": f"archiver -> {label}", "events": n, "seconds": round(seconds, 2),
                     "events_per_s": round(n / seconds), "ratio": n / seconds / ceiling, "files_batches": batches})
    local = n / timings["local directory"][0]
    result: dict[str, Any] = {
        "events": n, "partitions": PARTITIONS, "batch_messages": BATCH_MESSAGES,
        "events_per_s": round(local), "baseline_events_per_s": round(ceiling), "ratio": local / ceiling,
        "raw_consume_poll": raw.poll, "raw_consume_cpu_us_per_event": round(raw.cpu_s / n * 1e6, 2),
        "target_ratio": 0.5, "parse_only_events_per_s": round(n / parse_s),
        "naive_parse_events_per_s": round(n / naive_s),
        "typed_events_per_s": round(n / timings["local directory, typed columns"][0]),
        "typed_us_per_event": round(typed_s / n * 1e6, 3), "typed_per_event_path_us_per_event":
        round(typed_slow_s / n * 1e6, 3),
    }
    if "S3 (Ceph RGW)" in timings:
        s3_rate = n / timings["S3 (Ceph RGW)"][0]
        result |= {"s3_events_per_s": round(s3_rate), "s3_ratio": s3_rate / ceiling}
    else:
        result["s3"] = "skipped: no S3 endpoint reachable (set S3_ENDPOINT_URL or start the test Ceph)"
    write_result("archiver", result, rows)
    return result

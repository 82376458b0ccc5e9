"""The archiver against the S3 server (Ceph RGW locally): placement, exactly-once, a 30 s outage."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import boto3
import pytest

from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import S3Store
from consumers.runtime import Batch, ConsumerLoop
from schemas.arrow import parse_ndjson
from tests.consumers.archiver.helpers import archiver_env, assert_placement, read_archive, resend, settings
from tests.consumers.runtime.events import create_topic, events, produce
from tests.consumers.runtime.loops import running, wait_for
from tests.providers import Service, unique_name

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_env(s3: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.extra["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.extra["secret_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.extra["region"])
    return s3


def download(endpoint: str, bucket: str, prefix: str, target: Path) -> int:
    """Copy every data object under the prefix into a local tree; returns the number of files."""
    client = boto3.client("s3", endpoint_url=endpoint)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) + 1:]
            if relative.startswith("_manifests/"):
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(path))
            count += 1
    return count


def test_archives_to_s3_exactly_once(kafka: Service, s3_env: Service, s3_bucket: str, topic: str,
                                     tmp_path: Path) -> None:
    create_topic(kafka.url, topic, 3)
    generated = list(events(5000, hours=3))
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated])
    env = archiver_env(kafka.url, topic, unique_name("dlq"), f"s3://{s3_bucket}/lake", unique_name("g"),
                       S3_ENDPOINT_URL=s3_env.url)
    sink = ParquetSink(S3Store(s3_bucket, "lake", s3_env.url, 5 * 1024 * 1024))
    loop = ConsumerLoop(settings(env), sink, env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == 5000)
    assert download(s3_env.url, s3_bucket, "lake", tmp_path) >= 3
    table = read_archive(tmp_path)
    ids = table.column("event_id").to_pylist()
    assert len(ids) == 5000 and set(ids) == {e for _, _, e, _ in generated}
    assert_placement(table)


@pytest.mark.slow
@pytest.mark.fault
def test_s3_down_30_seconds_loses_and_doubles_nothing(kafka: Service, s3_env: Service, s3_bucket: str,
                                                     s3_gateway: object, topic: str, tmp_path: Path) -> None:
    endpoint = s3_gateway.endpoint  # type: ignore[attr-defined]
    create_topic(kafka.url, topic, 2)
    generated = list(events(12_000, hours=2))
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated[:6000]])
    env = archiver_env(kafka.url, topic, unique_name("dlq"), f"s3://{s3_bucket}/lake", unique_name("g"),
                       S3_ENDPOINT_URL=endpoint, CONSUMER_BATCH_MAX_MESSAGES="1000")
    sink = ParquetSink(S3Store(s3_bucket, "lake", endpoint, 5 * 1024 * 1024, timeout_s=3))
    loop = ConsumerLoop(settings(env), sink, env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == 6000)
        s3_gateway.pause()  # type: ignore[attr-defined]
        try:
            produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated[6000:]])
            time.sleep(30)
            assert loop.stats.rows == 6000, "nothing can be written while S3 is down"
            assert loop.stats.write_errors > 0
        finally:
            s3_gateway.resume()  # type: ignore[attr-defined]
        wait_for(lambda: loop.stats.rows == 12_000, timeout=120)
    download(s3_env.url, s3_bucket, "lake", tmp_path)
    ids = read_archive(tmp_path).column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12_000
    assert set(ids) == {e for _, _, e, _ in generated}


def test_list_and_a_rebuild_read_the_id_files_from_s3(s3_env: Service, s3_bucket: str, tmp_path: Path) -> None:
    """A fresh sink (another archiver) finds the earlier batch's ids through S3Store.list and drops the resends."""
    store = S3Store(s3_bucket, "lake", s3_env.url, 5 * 1024 * 1024)
    generated = list(events(200))
    values = [v for _, v, _, _ in generated]
    first = Batch("ev", 1, 0, 99, parse_ndjson(b"\n".join(values[:100])), 0)
    second_values = values[100:] + [resend(v, dt.timedelta(seconds=30)) for v in values[:20]]
    second = Batch("ev", 1, 100, 219, parse_ndjson(b"\n".join(second_values)), 0)
    for sink, b in ((ParquetSink(store), first), (ParquetSink(store), second)):
        sink.begin(b)
        sink.write(b)
    assert store.list("_dedup/topic=ev/partition=0001/") == [
        "_dedup/topic=ev/partition=0001/00000000000000000000.arrow",
        "_dedup/topic=ev/partition=0001/00000000000000000100.arrow",
    ]
    assert store.list("_dedup/topic=ev/partition=0002/") == []
    download(s3_env.url, s3_bucket, "lake", tmp_path)
    ids = read_archive(tmp_path).column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200

"""Tracking plans kept in S3: loaded, re-read when the listing changes, a bad change refused (moto, then Ceph)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from prometheus_client import CollectorRegistry, generate_latest

from evpipe.plans.model import PlanError
from evpipe.plans.source import S3Source, open_source
from evpipe.plans.watch import PlanWatcher, WatchMetrics
from gateway.metrics import PlanMetrics
from gateway.tracking import TrackingPlans
from tests.plans.samples import plan
from tests.providers import Service


def _put(client: Any, bucket: str, key: str, document: Any) -> None:
    body = yaml.safe_dump(document) if isinstance(document, dict) else document
    client.put_object(Bucket=bucket, Key=key, Body=body.encode())


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="plans")
        yield client


def test_plans_under_a_prefix_load_and_reload_when_the_listing_changes(moto_s3: Any) -> None:
    _put(moto_s3, "plans", "prod/web.yaml", plan(source="web"))
    _put(moto_s3, "plans", "prod/README.md", "not a plan")
    _put(moto_s3, "plans", "prod/old/app.yaml", plan(source="app"))  # a "subdirectory": not read
    _put(moto_s3, "plans", "staging/app.yaml", plan(source="app"))  # another prefix
    registry = CollectorRegistry()
    gateway = TrackingPlans("s3://plans/prod", 5, PlanMetrics(registry))
    assert set(gateway.checks) == {"web"}
    assert not gateway.reload()  # nothing changed: one listing, no object read
    _put(moto_s3, "plans", "prod/web.yaml", plan(source="web", version=2))
    assert gateway.reload() and gateway.checks["web"].plan.version == 2
    _put(moto_s3, "plans", "prod/app.json", '{"source": "app", "version": 1, "events": {}}')
    assert gateway.reload() and set(gateway.checks) == {"web", "app"}


def test_a_bad_change_in_s3_is_refused_once_and_the_old_plans_stay(moto_s3: Any) -> None:
    _put(moto_s3, "plans", "web.yaml", plan(source="web"))
    registry = CollectorRegistry()
    gateway = TrackingPlans("s3://plans", 5, PlanMetrics(registry))
    _put(moto_s3, "plans", "web.yaml", "source: web\nversion: [\n")
    assert not gateway.reload()
    assert not gateway.reload()  # the same listing: refused once, not every few seconds
    metrics = generate_latest(registry).decode()
    assert "evpipe_gateway_plan_reload_failures_total 1.0" in metrics
    assert "evpipe_gateway_plan_files_refused 1.0" in metrics
    assert gateway.checks["web"].plan.version == 1
    _put(moto_s3, "plans", "web.yaml", plan(source="web", version=3))
    assert gateway.reload() and gateway.checks["web"].plan.version == 3


def test_a_consumer_watcher_refuses_and_counts_like_the_gateway(moto_s3: Any) -> None:
    _put(moto_s3, "plans", "p/web.yaml", plan(source="web"))
    seen: list[int] = []
    registry = CollectorRegistry()
    source = open_source("s3://plans/p")
    assert isinstance(source, S3Source)
    watcher = PlanWatcher(source, 5, lambda plans: seen.append(plans.plans["web"].version),
                          WatchMetrics("archiver", registry))
    _put(moto_s3, "plans", "p/web.yaml", {"source": "web", "version": 0, "events": {}})
    assert not watcher.poll() and not watcher.poll()
    assert "evpipe_archiver_plan_reload_failures_total 1.0" in generate_latest(registry).decode()
    _put(moto_s3, "plans", "p/web.yaml", plan(source="web", version=2))
    assert watcher.poll() and seen == [1, 2]


def test_an_unreachable_bucket_is_a_plan_error_at_start(moto_s3: Any) -> None:
    with pytest.raises(PlanError, match="cannot list"):
        TrackingPlans("s3://no-such-bucket/plans", 5, PlanMetrics(CollectorRegistry()))


@pytest.mark.s3
def test_plans_in_the_real_s3_reload_on_their_own(s3: Service, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the suite's S3 server (Ceph RGW locally): the gateway's poll sees a changed object."""
    for name, key in (("AWS_ACCESS_KEY_ID", "access_key"), ("AWS_SECRET_ACCESS_KEY", "secret_key"),
                      ("AWS_DEFAULT_REGION", "region")):
        monkeypatch.setenv(name, s3.extra[key])
    client = boto3.client("s3", endpoint_url=s3.url)
    _put(client, s3_bucket, "plans/web.yaml", plan(source="web"))
    gateway = TrackingPlans(f"s3://{s3_bucket}/plans", 5, PlanMetrics(CollectorRegistry()), s3.url)
    assert gateway.checks["web"].plan.version == 1
    time.sleep(1.1)  # LastModified has whole seconds; the ETag changes anyway
    _put(client, s3_bucket, "plans/web.yaml", plan(source="web", version=2))
    _put(client, s3_bucket, "plans/bad.yaml", "source: [")
    assert not gateway.reload() and gateway.checks["web"].plan.version == 1
    client.delete_object(Bucket=s3_bucket, Key="plans/bad.yaml")
    assert gateway.reload() and gateway.checks["web"].plan.version == 2

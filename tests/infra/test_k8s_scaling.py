"""Kubernetes manifests: the seeds' autoscaling rules (gateway on CPU, workers on the Redis list, each
consumer group on its own Kafka lag)."""

from __future__ import annotations

from typing import Any

from tests.infra.support import (
    by_name,
    config_data,
    of_kind,
    render,
)

# ---- autoscaling --------------------------------------------------------------------------------


def test_gateway_scales_on_cpu_above_70_percent(objects: tuple[dict[str, Any], ...]) -> None:
    hpa = by_name(objects, "HorizontalPodAutoscaler", "evpipe-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "evpipe-gateway"
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600  # idle 10 min -> scale in
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_seeds_api_tier_is_5_to_50_from_stage_2() -> None:
    for overlay in ("stage2", "stage3"):
        hpa = by_name(render(overlay), "HorizontalPodAutoscaler", "evpipe-gateway")["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (5, 50)


def _scaled_object_for(objects: tuple[dict[str, Any], ...], deployment: str) -> dict[str, Any]:
    found = [s for s in of_kind(objects, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == deployment]
    assert len(found) == 1, f"{deployment}: {len(found)} ScaledObjects"
    spec = found[0]["spec"]
    assert spec["cooldownPeriod"] == 600
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] == 600
    return spec


def test_workers_scale_on_redis_list_length_over_500() -> None:
    objects = render("stage2")
    spec = _scaled_object_for(objects, "evpipe-worker")
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listLength"] == "500"
    # KEDA must watch the very list the gateway pushes to and the workers drain.
    from evpipe.settings import RedisSettings

    queue_key = config_data(objects).get("REDIS_QUEUE_KEY", RedisSettings.model_fields["redis_queue_key"].default)
    assert trigger["metadata"]["listName"] == queue_key
    auth = by_name(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} >= {"address", "password"}


def test_consumer_groups_scale_on_their_own_kafka_lag() -> None:
    objects = render("stage3")
    groups = {"evpipe-loader": _group_id("consumers.loader.settings", "LoaderSettings", "loader_group_id"),
              "evpipe-archiver": _group_id("consumers.archiver.settings", "ArchiverSettings", "archiver_group")}
    partitions = int(config_data(objects)["KAFKA_PARTITIONS"])
    for deployment, group in groups.items():
        spec = _scaled_object_for(objects, deployment)
        topic = config_data(objects)["KAFKA_TOPIC"]
        # The live topics, each a trigger (the overflow lane is live traffic too); never the replay topic.
        assert sorted(t["metadata"]["topic"] for t in spec["triggers"]) == [topic, f"{topic}.overflow"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            if group is not None:  # the group KEDA measures must be the one the process joins
                assert meta["consumerGroup"] == group, deployment
            assert meta["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP_SERVERS"
            assert int(meta["lagThreshold"]) > 0
        # More members than partitions would sit idle.
        assert spec["maxReplicaCount"] <= partitions
    assert "evpipe-kafka" in {a["metadata"]["name"] for a in of_kind(objects, "TriggerAuthentication")}


def _group_id(module: str, cls: str, field: str) -> str | None:
    try:
        settings = getattr(__import__(module, fromlist=[cls]), cls)
    except ModuleNotFoundError:
        return None  # that consumer is not in this checkout yet
    assert field in settings.model_fields, f"{cls} has no {field}: which group does it join?"
    return str(settings.model_fields[field].default)

"""Kubernetes manifests: every overlay renders, validates against the Kubernetes schemas, and keeps
the seeds' properties (zero-downtime rollouts, PDBs, autoscaling rules, private data tier)."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.infra.crd_schemas import CRD_SCHEMAS
from tests.infra.support import (
    NAMESPACE,
    app_workloads,
    by_name,
    config_data,
    containers,
    known_env_vars,
    of_kind,
    pod_labels,
    render,
    selector_matches,
    workloads,
)

K8S_VERSION = "1.30.0"  # oldest Kubernetes these manifests support (EKS standard support)





# ---- schema validation --------------------------------------------------------------------------


def test_every_object_validates_against_its_schema(objects: tuple[dict[str, Any], ...]) -> None:
    checked = 0
    for obj in objects:
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
        else:
            # strict: unknown fields (a misspelt key Kubernetes would silently drop) are errors.
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        checked += 1
    assert checked == len(objects) > 10


def test_namespaced_objects_land_in_the_evpipe_namespace(objects: tuple[dict[str, Any], ...]) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_config_holds_only_variables_the_app_reads(objects: tuple[dict[str, Any], ...]) -> None:
    # A misspelt variable would be ignored by pydantic-settings (extra="ignore") and the default used.
    known = known_env_vars()
    unknown = set(config_data(objects)) - known
    assert not unknown, f"evpipe-config sets variables no settings class reads: {sorted(unknown)}"
    for workload in app_workloads(objects):
        for container in containers(workload):
            names = {e["name"] for e in container.get("env", [])}
            assert names <= known, f"{workload['metadata']['name']}: unknown env {sorted(names - known)}"


def test_stage_selects_its_backend() -> None:
    assert config_data(render("stage1"))["GATEWAY_BACKEND"] == "postgres"
    assert config_data(render("stage2"))["GATEWAY_BACKEND"] == "redis"
    stage3 = config_data(render("stage3"))
    assert stage3["GATEWAY_BACKEND"] == "kafka"
    assert stage3["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert stage3["ARCHIVE_URI"].startswith("s3://")
    kinds = {o["metadata"]["name"] for o in workloads(render("stage3"))}
    assert {"evpipe-gateway", "evpipe-archiver", "evpipe-loader"} <= kinds
    assert "evpipe-worker" not in kinds and "evpipe-postgres" not in kinds
    assert "evpipe-worker" in {o["metadata"]["name"] for o in workloads(render("stage2"))}


# ---- workloads ----------------------------------------------------------------------------------


def test_rollouts_never_drop_capacity(objects: tuple[dict[str, Any], ...]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, deployment["metadata"]["name"]


def test_every_container_has_probes_resources_and_a_locked_down_context(objects: tuple[dict[str, Any], ...]) -> None:
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert all("hostPort" not in port for port in container.get("ports", [])), name


def test_app_images_come_from_the_registry_with_a_fixed_tag(objects: tuple[dict[str, Any], ...]) -> None:
    for workload in app_workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            assert re.fullmatch(r"\d+\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/evpipe:[\w.-]+", image), image
            assert not image.endswith(":latest")


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if str(value).endswith("m") else float(value)


def _mem(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(value[:-2]) * units[value[-2:]] if value[-2:] in units else int(value)


def test_resources_follow_the_seeds_profiles() -> None:
    stage2 = render("stage2")
    stage3 = render("stage3")
    gateway = containers(by_name(stage3, "Deployment", "evpipe-gateway"))[0]["resources"]
    # API: CPU-hungry, scales out on CPU (HPA below) - it gets the biggest CPU share per byte of memory.
    assert _cpu(gateway["requests"]["cpu"]) >= 0.5
    assert _cpu(gateway["requests"]["cpu"]) / _mem(gateway["requests"]["memory"]) * 2**30 >= 2
    # Workers: CPU and network, on the network-optimised node pool.
    for name in ("evpipe-archiver", "evpipe-loader"):
        deployment = by_name(stage3, "Deployment", name)
        affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        pools = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchExpressions"][0]
        assert pools["values"] == ["network"], name
    # Redis: RAM-bound and scaled vertically - guaranteed memory (requests == limits).
    redis = containers(by_name(stage2, "StatefulSet", "evpipe-redis"))[0]
    assert redis["resources"]["requests"]["memory"] == redis["resources"]["limits"]["memory"]
    assert "noeviction" in redis["args"]
    for objects in (stage2, stage3):
        for workload in workloads(objects):
            for container in containers(workload):
                res = container["resources"]
                assert _mem(res["limits"]["memory"]) >= _mem(res["requests"]["memory"])
                assert _cpu(res["limits"]["cpu"]) >= _cpu(res["requests"]["cpu"])


@pytest.mark.parametrize(("deployment", "module", "cls"), [
    ("evpipe-archiver", "consumers.archiver.settings", "ArchiverSettings"),
    ("evpipe-loader", "consumers.loader.settings", "LoaderSettings"),
])
def test_consumer_memory_limit_fits_its_buffer_cap(deployment: str, module: str, cls: str) -> None:
    # The runtime bounds buffered bytes (CONSUMER_BUFFER_MAX_BYTES); encoding a batch (Arrow, Parquet)
    # needs about as much again. Below 2x the cap the kernel would kill the pod under backlog.
    try:
        settings = getattr(__import__(module, fromlist=[cls]), cls)
    except ModuleNotFoundError:
        pytest.skip(f"{module} is not in this checkout yet")
    objects = render("stage3")
    (container,) = containers(by_name(objects, "Deployment", deployment))
    env = {e["name"]: e.get("value") for e in container.get("env", [])} | config_data(objects)
    cap = int(env.get("CONSUMER_BUFFER_MAX_BYTES", settings.model_fields["consumer_buffer_max_bytes"].default))
    assert _mem(container["resources"]["limits"]["memory"]) >= 2 * cap
    assert _mem(container["resources"]["requests"]["memory"]) >= cap


def test_every_workload_has_a_disruption_budget(objects: tuple[dict[str, Any], ...]) -> None:
    pdbs = of_kind(objects, "PodDisruptionBudget")
    for workload in app_workloads(objects):
        if workload["kind"] == "Rollout":
            continue  # takes over the Deployment's pods and labels
        covering = [p for p in pdbs if selector_matches(p["spec"]["selector"], pod_labels(workload))]
        assert len(covering) == 1, f"{workload['metadata']['name']}: {len(covering)} PDBs"
        budget = covering[0]["spec"]
        assert budget.get("maxUnavailable") not in (None, 0, "0%") or budget.get("minAvailable") is not None


# ---- gateway drain and probes ------------------------------------------------------------------------


def _gateway_routes() -> set[tuple[str, str]]:
    """(path, method) pairs the gateway app declares and answers 200 to once started."""
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    app = create_app(GatewaySettings(), backend=_IdleBackend())
    declared = {(route.path, method) for route in app.routes if isinstance(route, Route)
                for method in route.methods or ()}
    with TestClient(app) as client:  # runs the lifespan: the backend starts, readiness turns on
        return {(path, method) for path, method in declared
                if method == "GET" and client.get(path).status_code == 200}


class _IdleBackend:
    """Enough of gateway.backends.base.Backend to build the app without a server."""

    name = "idle"

    async def start(self) -> None: ...

    async def send(self, records: Any, rejected: Any, deadline: float) -> None: ...

    async def ready(self) -> str | None:
        return None

    def queued(self) -> int:
        return 0

    async def close(self) -> None: ...


def test_gateway_probes_hit_routes_the_gateway_serves(objects: tuple[dict[str, Any], ...]) -> None:
    routes = _gateway_routes()
    workload = by_name(objects, "Deployment", "evpipe-gateway")
    (container,) = containers(workload)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(config_data(objects)["GATEWAY_PORT"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and (path, "GET") in routes, f"{probe} -> {get['path']}"
        assert get["port"] in ports
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert ("/metrics", "GET") in routes and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["http"]


def test_gateway_termination_covers_prestop_and_drain(objects: tuple[dict[str, Any], ...]) -> None:
    from tests.infra.support import first, resource

    workload = by_name(objects, "Deployment", "evpipe-gateway")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    sleep = int(command[1])
    config = config_data(objects)
    drain = float(config["GATEWAY_DRAIN_S"]) + float(config["GATEWAY_DEADLINE_S"])
    flush = 10  # producer flush of what was accepted
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain + flush
    # Deregistration from the ALB target group (Terraform) completes before SIGTERM reaches the app.
    target_group = resource("aws_lb_target_group", "gateway")
    assert int(target_group["deregistration_delay"]) <= sleep
    assert first(target_group["health_check"])["path"] == "/readyz"


def test_consumers_probe_their_metrics_port(objects: tuple[dict[str, Any], ...]) -> None:
    config = config_data(objects)
    for workload in app_workloads(objects):
        name = workload["metadata"]["name"]
        if name == "evpipe-gateway" or workload["kind"] == "Rollout":
            continue
        (container,) = containers(workload)
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        configured = env.get("WORKER_METRICS_PORT") if name == "evpipe-worker" else config.get("METRICS_PORT")
        assert configured is not None and int(configured) == port, name
        assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
        assert int(workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == port


# ---- canary ---------------------------------------------------------------------------------------


def test_canary_goes_10_50_100_gated_on_error_rate() -> None:
    objects = render("stage3-canary")
    rollout = by_name(objects, "Rollout", "evpipe-gateway")["spec"]
    assert rollout["workloadRef"]["name"] == "evpipe-gateway"
    canary = rollout["strategy"]["canary"]
    weights = [step["setWeight"] for step in canary["steps"] if "setWeight" in step]
    assert weights == [10, 50, 100]
    assert all("pause" in step or "setWeight" in step for step in canary["steps"])
    (template,) = canary["analysis"]["templates"]
    analysis = by_name(objects, "AnalysisTemplate", template["templateName"])["spec"]
    queries = [m["provider"]["prometheus"]["query"] for m in analysis["metrics"]]
    assert any('status=~"5.."' in q for q in queries)
    assert all("{{args.canary-hash}}" in q for q in queries)
    hpa = by_name(objects, "HorizontalPodAutoscaler", "evpipe-gateway")["spec"]["scaleTargetRef"]
    assert (hpa["kind"], hpa["name"]) == ("Rollout", "evpipe-gateway")


def test_workload_commands_are_real_evpipe_subcommands(objects: tuple[dict[str, Any], ...]) -> None:
    from evpipe.cli import build_parser

    parser = build_parser()
    commands = []
    for workload in app_workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            commands.append(container["args"])
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert commands
    top = next(a for a in parser._actions if a.dest == "command").choices
    for args in commands:
        if args[0] not in top:
            pytest.skip(f"`evpipe {args[0]}` is not in this checkout yet")
        parser.parse_args(args)  # exits (fails the test) on an unknown subcommand or option


def test_stage3_consumers_create_topics_before_joining() -> None:
    objects = render("stage3")
    for name in ("evpipe-archiver", "evpipe-loader"):
        pod = by_name(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert [c["args"] for c in pod["initContainers"]] == [["topics", "create"]]


def test_replay_job_template_rebuilds_clickhouse_from_the_archive() -> None:
    import shlex

    from evpipe.cli import build_parser

    objects = render("stage3")
    cronjob = by_name(objects, "CronJob", "evpipe-replay-archive")
    assert cronjob["spec"]["suspend"] is True, "a template for `kubectl create job --from`, never scheduled"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    spec = pod["spec"]
    # S3 read access comes from the archiver's IAM role (IRSA), and the archiver's egress policy.
    assert spec["serviceAccountName"] == "evpipe-archiver"
    egress = by_name(objects, "NetworkPolicy", "archiver-egress-to-s3")
    assert selector_matches(egress["spec"]["podSelector"], pod["metadata"]["labels"])
    assert pod["metadata"]["labels"]["evpipe.io/tier"] == "app"  # reaches ClickHouse like the loader
    (container,) = spec["containers"]
    assert container["command"] == ["sh", "-c"]
    argv = shlex.split(container["args"][0].replace('"$REPLAY_FROM"', "2026-11-01T00:00:00Z")
                       .replace('"$REPLAY_TO"', "2026-11-21T00:00:00Z"))
    assert argv[:2] == ["exec", "evpipe"]
    args = build_parser().parse_args(argv[2:])  # the real CLI accepts it
    assert (args.command, args.action, args.into) == ("replay", "archive", "clickhouse")
    windows = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    assert "evpipe-replay-window" in windows
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True

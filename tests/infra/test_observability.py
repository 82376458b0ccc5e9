"""Observability: alert rules and dashboard queries only reference metrics the code really exports
(read from each component's /metrics, served by the component's own code); dashboard and canary
queries are valid PromQL. promtool checks and unit-tests the alert rules (test_alert_rules.py)."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.infra.support import OBSERVABILITY, REPO, of_kind, render

ALERTS = OBSERVABILITY / "prometheus" / "alerts.yaml"
SCRAPE = OBSERVABILITY / "prometheus" / "scrape.yaml"
DASHBOARD = OBSERVABILITY / "grafana" / "evpipe-dashboard.json"
RUNBOOK = REPO / "docs" / "operations.md"

# Grafana's and Argo's template variables, replaced by what they expand to before parsing.
TEMPLATE_VARS = {"$__rate_interval": "5m", "{{args.canary-hash}}": "abc123"}


def _expand(expr: str) -> str:
    for var, value in TEMPLATE_VARS.items():
        expr = expr.replace(var, value)
    return expr


def _selectors(node: Any) -> set[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    names: set[str] = set()
    kind = type(node).__name__
    if kind == "VectorSelector":
        if node.name:
            names.add(node.name)
        return names
    for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            names |= _selectors(child)
    args = getattr(node, "args", None)
    if args is not None:
        for child in (args.args if hasattr(args, "args") else args):
            names |= _selectors(child)
    return names


def metric_names(expr: str) -> set[str]:
    return _selectors(promql_parser.parse(_expand(expr)))


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def analysis_exprs() -> list[str]:
    templates = of_kind(render("stage3-canary"), "AnalysisTemplate")
    return [m["provider"]["prometheus"]["query"] for t in templates for m in t["spec"]["metrics"]]


def _duration_s(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", text))


# ---- alert rules ---------------------------------------------------------------------------------


def test_alerts_cover_the_failure_modes() -> None:
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            by_metric.setdefault(name, []).append(rule)
    gateway = [r for r in by_metric["evpipe_gateway_requests_total"]]
    assert any('status=~"5.."' in r["expr"] for r in gateway), "gateway 5xx rate"
    assert any('status="503"' in r["expr"] for r in gateway), "gateway 503 rate"
    (auth,) = [r for r in gateway if 'status="401"' in r["expr"]]
    assert "rate(" in auth["expr"] and "/ " not in auth["expr"], "401s as an absolute rate: a ratio hides guessing"
    assert _duration_s(auth["for"]) >= 300, "a surge of 401s lasting minutes, not one bad batch"
    (lag,) = [r for r in by_metric["evpipe_consumer_lag"] if "delta(" in r["expr"] or "deriv(" in r["expr"]]
    assert _duration_s(lag["for"]) >= 600 and "[10m" in lag["expr"], "growing for 10 minutes"
    stuck = [r for r in by_metric["evpipe_consumer_lag"] if "changes(" in r["expr"]]
    assert stuck, "a partition whose lag never moves (a stalled member) must alert too"
    assert "increase(" in by_metric["evpipe_consumer_dead_letters_total"][0]["expr"]
    assert by_metric["evpipe_worker_dead_letters_total"]
    assert by_metric["evpipe_worker_queue_depth"]
    # The archiver's failed uploads are its failed batch writes (the consumer runtime counts them).
    archiver_failures = [r for r in by_metric["evpipe_consumer_write_errors_total"]
                         if 'component="archiver"' in r["expr"]]
    assert archiver_failures, "archiver upload failures"


def _runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def test_every_alert_has_severity_summary_and_an_existing_runbook_section() -> None:
    anchors = _runbook_anchors()
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "warn"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, f"{rule['alert']}: no section #{anchor}"


def test_scrape_config_labels_what_alerts_and_canary_group_by() -> None:
    (job,) = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["evpipe"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    grouped = {label for rule in alert_rules() for label in re.findall(r"by \(([^)]*)\)", rule["expr"])}
    used = {label.strip() for group in grouped for label in group.split(",")} - {"le", "topic", "partition"}
    assert used <= targets, f"alerts group by labels the scrape config does not set: {used - targets}"
    assert "rollouts_pod_template_hash" in targets and "component" in targets
    assert "alerts.yaml" in yaml.safe_load(SCRAPE.read_text())["rule_files"]


# ---- dashboard -------------------------------------------------------------------------------------


def test_dashboard_queries_are_valid_and_cover_the_pipeline() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    names = set().union(*(metric_names(e) for e in exprs))
    for needed, what in (("evpipe_gateway_events_accepted_total", "ingest rate"),
                         ("evpipe_gateway_backend_latency_seconds_bucket", "latency"),
                         ("evpipe_consumer_lag", "lag per group"),
                         ("evpipe_loader_rows_total", "sink throughput"),
                         ("evpipe_consumer_dead_letters_total", "dead letters"),
                         ("evpipe_worker_queue_depth", "stage-2 queue")):
        assert needed in names, what
    lag = [e for e in exprs if "evpipe_consumer_lag" in e]
    assert any("by (component" in e for e in lag), "lag per consumer group"


# ---- the names exist in the code -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exported(text: str) -> set[str]:
    """Series names a /metrics page can produce, including families with no sample yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("_count", "_sum", "_created"), "info": ("_info",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        if family.type in ("histogram", "summary"):
            names.add(family.name)  # how prose names a histogram; never a queryable counter stem
        names |= {sample.name for sample in family.samples}
    return names


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _gateway() -> str:
    from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from tests.infra.test_k8s_manifests import _IdleBackend

    with TestClient(create_app(GatewaySettings(), backend=_IdleBackend())) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        return response.text


def _serve(*owners: str) -> str:
    """A consumer process's /metrics: the runtime's metrics and its sink's on one registry."""
    from consumers.archiver.metrics import ArchiverMetrics
    from consumers.loader.metrics import LoaderMetrics
    from consumers.runtime.metrics import ConsumerMetrics, process_registry, serve

    registry = process_registry()
    ConsumerMetrics(registry)
    for owner in owners:
        {"loader": LoaderMetrics, "archiver": ArchiverMetrics}[owner](registry)
    port = _free_port()
    serve(registry, port)
    return _scrape(port)


def _runtime() -> str:
    return _serve()


def _loader() -> str:
    return _serve("loader")  # evpipe_loader_* next to the runtime's, as the loader's admin server serves them


def _archiver() -> str:
    return _serve("archiver")  # evpipe_archiver_*


def _worker() -> str:
    from consumers.runtime.metrics import process_registry, serve
    from consumers.worker.metrics import WorkerMetrics

    registry = process_registry()
    WorkerMetrics(registry)
    port = _free_port()
    serve(registry, port)
    return _scrape(port)


# The privacy list's age is exported by the gateway and every consumer alike; the gateway's scrape shows it.
COMPONENTS = {"gateway": _gateway, "consumer": _runtime, "loader": _loader, "worker": _worker,
              "archiver": _archiver, "privacy": _gateway}


def referenced_names() -> set[str]:
    exprs = [r["expr"] for r in alert_rules()] + dashboard_exprs() + analysis_exprs()
    return {n for e in exprs for n in metric_names(e) if n.startswith("evpipe_")}


def test_every_referenced_metric_belongs_to_a_component() -> None:
    prefixes = tuple(f"evpipe_{c}_" for c in COMPONENTS)
    assert all(n.startswith(prefixes) for n in referenced_names())


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_referenced_metrics_are_exported_by_the_code(component: str) -> None:
    wanted = {n for n in referenced_names() if n.startswith(f"evpipe_{component}_")}
    assert wanted, f"nothing on the dashboard or in alerts watches the {component}"
    try:
        exported = _exported(COMPONENTS[component]())
    except ModuleNotFoundError as exc:
        pytest.skip(f"{component}: module {exc.name} is not in this checkout yet")
    missing = wanted - exported
    assert not missing, f"{component} does not export {sorted(missing)} (it exports {sorted(exported)})"


def test_dashboard_layout_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"

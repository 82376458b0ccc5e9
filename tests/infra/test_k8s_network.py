"""Kubernetes manifests: what is exposed, and the network policies that keep the data tier private and
the app tier's egress to DNS, the data tier and (archiver, gateway) S3."""

from __future__ import annotations

from typing import Any

from tests.infra.support import (
    OVERLAYS,
    app_workloads,
    by_name,
    containers,
    of_kind,
    pod_labels,
    render,
    selector_matches,
    workloads,
)

# ---- exposure and network policy ------------------------------------------------------------------


def test_only_the_gateway_is_exposed(objects: tuple[dict[str, Any], ...]) -> None:
    for service in of_kind(objects, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    assert not of_kind(objects, "Ingress"), "the ALB comes from Terraform; no Ingress creates another"
    bindings = of_kind(objects, "TargetGroupBinding")
    assert [b["spec"]["serviceRef"]["name"] for b in bindings] == ["evpipe-gateway"]
    service = by_name(objects, "Service", "evpipe-gateway")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"


def _policies_for(objects: tuple[dict[str, Any], ...], labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [p for p in of_kind(objects, "NetworkPolicy")
            if kind in p["spec"].get("policyTypes", []) and selector_matches(p["spec"]["podSelector"], labels)]


def test_everything_is_denied_unless_allowed(objects: tuple[dict[str, Any], ...]) -> None:
    deny = by_name(objects, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_only_the_load_balancer_and_monitoring_reach_the_gateway(objects: tuple[dict[str, Any], ...]) -> None:
    from tests.infra.support import subnet_cidrs

    public = subnet_cidrs("public")
    gateway = pod_labels(by_name(objects, "Deployment", "evpipe-gateway"))
    peers = [peer for p in _policies_for(objects, gateway, "Ingress") for rule in p["spec"].get("ingress", [])
             for peer in rule.get("from", [])]
    assert peers, "the gateway must admit the ALB"
    import ipaddress

    for peer in peers:
        if "ipBlock" in peer:
            block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            # Only the public subnets (where the ALB's nodes live) - nothing wider.
            assert all(any(s.subnet_of(block) for s in public) for s in public)
            assert block.num_addresses <= sum(s.num_addresses for s in public) * 2, block
        else:
            assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


KEDA_OPERATOR = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
                 "podSelector": {"matchLabels": {"app": "keda-operator"}}}


def test_data_tier_admits_only_the_app_tier() -> None:
    covered = 0
    for overlay in OVERLAYS:
        objects = render(overlay)
        for workload in workloads(objects):
            labels = pod_labels(workload)
            if labels.get("evpipe.io/tier") != "data":
                continue
            policies = _policies_for(objects, labels, "Ingress")
            admitted: set[int] = set()
            for policy in policies:
                for rule in policy["spec"].get("ingress", []):
                    assert rule.get("from"), f"{policy['metadata']['name']}: a rule without `from` admits anyone"
                    ports = {p["port"] for p in rule.get("ports", [])}
                    assert ports, f"{policy['metadata']['name']}: a rule without ports admits every port"
                    for peer in rule["from"]:
                        if peer == KEDA_OPERATOR:
                            # the autoscaler reads queue length and lag, on those ports only
                            assert ports <= {6379, 9092}, policy["metadata"]["name"]
                            continue
                        assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: {peer}"
                        assert peer["podSelector"] == {"matchLabels": {"evpipe.io/tier": "app"}}
                        admitted |= ports
            # Covered means: the app tier can reach the service port, and nothing else can.
            serving = {p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}
            assert serving and serving <= admitted, f"{overlay}: {workload['metadata']['name']} unreachable"
            app_egress = {p["port"] for policy in _policies_for(objects, {"evpipe.io/tier": "app"}, "Egress")
                          for rule in policy["spec"].get("egress", [])
                          if any(peer.get("podSelector") == {"matchLabels": {"evpipe.io/tier": "data"}}
                                 for peer in rule.get("to", []))
                          for p in rule.get("ports", [])}
            assert serving <= app_egress, f"{overlay}: the app tier may not reach {workload['metadata']['name']}"
            if labels["app.kubernetes.io/component"] == "redis" and of_kind(objects, "ScaledObject"):
                keda = {p["port"] for policy in policies for rule in policy["spec"].get("ingress", [])
                        if KEDA_OPERATOR in rule["from"] for p in rule["ports"]}
                assert 6379 in keda, "KEDA must read the queue length it scales the workers on"
            covered += 1
    assert covered >= 3  # stage-1 Postgres, stage-2 Postgres and Redis


def test_app_tier_egress_is_limited_to_dns_and_the_data_tier(objects: tuple[dict[str, Any], ...]) -> None:
    import ipaddress

    from tests.infra.support import subnet_cidrs

    data = subnet_cidrs("data")
    for workload in app_workloads(objects):
        labels = pod_labels(workload)
        policies = _policies_for(objects, labels, "Egress")
        assert any(p["metadata"]["name"] == "default-deny-all" for p in policies)
        for policy in policies:
            for rule in policy["spec"].get("egress", []):
                assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']}: unrestricted egress"
                for peer in rule["to"]:
                    if "ipBlock" not in peer:
                        continue
                    block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    if block.prefixlen == 0:
                        # Only the archiver and the gateway (its S3 fallback store) may leave the VPC, only on
                        # 443 (S3, STS), never to private ranges.
                        assert labels["app.kubernetes.io/component"] in ("archiver", "gateway"), \
                            policy["metadata"]["name"]
                        assert selector_matches(policy["spec"]["podSelector"], {"app.kubernetes.io/component": "replay"})
                        assert not selector_matches(policy["spec"]["podSelector"],
                                                    {"app.kubernetes.io/component": "loader"})
                        assert [p["port"] for p in rule["ports"]] == [443]
                        assert "10.0.0.0/8" in peer["ipBlock"]["except"]
                    else:
                        assert all(s.subnet_of(block) for s in data) and block.prefixlen >= 20, block


def test_stage3_gateway_keeps_events_in_s3_while_kafka_is_down() -> None:
    """The pods' root is read-only, so the default local store cannot work: stage 3 names an S3 store, and
    the gateway has the identity (IRSA) and the egress to reach it."""
    objects = render("stage3")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("evpipe-config"))
    assert config["data"]["GATEWAY_FALLBACK_URI"].startswith("s3://")
    assert config["data"]["GATEWAY_FALLBACK_URI"].split("/")[2] == config["data"]["ARCHIVE_URI"].split("/")[2]
    account = next(o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "evpipe-gateway")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/evpipe-gateway")
    gateway = next(w for w in app_workloads(objects) if pod_labels(w)["app.kubernetes.io/component"] == "gateway")
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == "evpipe-gateway"
    egress = [rule for policy in _policies_for(objects, pod_labels(gateway), "Egress")
              for rule in policy["spec"].get("egress", [])]
    assert any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" and [p["port"] for p in rule["ports"]] == [443]
               for rule in egress for peer in rule["to"])

"""AWS Terraform: parses, keeps the seeds' network rules (only the ALB is public; each tier admits only
the tier above), encrypts everything at rest and in transit, and outputs what the app's settings read."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest

from tests.infra.support import (
    TERRAFORM,
    first,
    known_env_vars,
    render,
    resource,
    resources,
    subnet_cidrs,
    terraform,
    variable_default,
)

OPEN = {"0.0.0.0/0", "::/0"}


def _refs(value: Any) -> str:
    """Everything a block says, as text, to find references such as aws_subnet.public."""
    return json.dumps(value)


def test_every_file_parses() -> None:
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 10
    import hcl2

    for path in files:
        with path.open() as handle:
            assert hcl2.load(handle), path
    kinds = {rtype for rtype, _, _ in resources()}
    for needed in ("aws_vpc", "aws_subnet", "aws_security_group", "aws_lb", "aws_msk_cluster", "aws_s3_bucket",
                   "aws_elasticache_replication_group", "aws_db_instance", "aws_ecr_repository", "aws_eks_cluster"):
        assert needed in kinds, needed


def test_subnets_span_three_azs_in_three_tiers() -> None:
    tiers = {tier: subnet_cidrs(tier) for tier in ("public", "app", "data")}
    vpc = ipaddress.ip_network(variable_default("vpc_cidr"))
    every = [net for nets in tiers.values() for net in nets]
    assert all(len(nets) == 3 for nets in tiers.values())
    assert all(net.subnet_of(vpc) for net in every)
    assert not any(a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1:])
    for tier in tiers:
        assert "local.azs[count.index]" in resource("aws_subnet", tier)["availability_zone"]
        assert "false" in str(resource("aws_subnet", tier).get("map_public_ip_on_launch", "false")).lower()


def test_only_the_data_and_app_route_tables_are_private() -> None:
    # Public subnets route to the internet gateway; the app tier only via NAT; the data tier nowhere.
    assert "aws_internet_gateway" in _refs(resource("aws_route_table", "public"))
    app = resource("aws_route_table", "app")
    assert "aws_nat_gateway" in _refs(app) and "aws_internet_gateway" not in _refs(app)
    assert "route" not in resource("aws_route_table", "data")


def test_only_the_alb_and_nat_sit_in_public_subnets() -> None:
    allowed = {("aws_lb", "gateway"), ("aws_nat_gateway", "this"), ("aws_route_table_association", "public")}
    placed = {"aws_msk_cluster": "data", "aws_db_subnet_group": "data", "aws_elasticache_subnet_group": "data",
              "aws_eks_cluster": "app", "aws_eks_node_group": "app"}
    for rtype, name, body in resources():
        text = _refs(body)
        if "aws_subnet.public" in text:
            assert (rtype, name) in allowed, f"{rtype}.{name} is in a public subnet"
        if rtype in placed:
            assert f"aws_subnet.{placed[rtype]}" in text, f"{rtype}.{name} must use the {placed[rtype]} subnets"
    alb = resource("aws_lb", "gateway")
    assert alb["internal"] is False and "aws_subnet.public" in _refs(alb["subnets"])
    msk = first(resource("aws_msk_cluster", "this")["broker_node_group_info"])
    assert first(first(msk["connectivity_info"])["public_access"])["type"] == "DISABLED"
    assert resource("aws_db_instance", "postgres")["publicly_accessible"] is False
    eks = first(resource("aws_eks_cluster", "this")["vpc_config"])
    assert eks["endpoint_public_access"] is False


def _ingress_rules() -> list[tuple[str, dict[str, Any]]]:
    rules = []
    for rtype, name, body in resources():
        if rtype == "aws_vpc_security_group_ingress_rule" or rtype == "aws_security_group_rule" and body.get("type") == "ingress":
            rules.append((name, body))
        elif rtype == "aws_security_group":
            rules.extend((f"{name}.inline", rule) for rule in body.get("ingress", []))
    return rules


def test_no_open_ingress_except_https_to_the_alb() -> None:
    rules = _ingress_rules()
    assert len(rules) >= 5
    open_rules = []
    for name, rule in rules:
        cidrs = {rule.get("cidr_ipv4"), rule.get("cidr_ipv6"), *(rule.get("cidr_blocks") or [])}
        if cidrs & OPEN:
            open_rules.append(name)
            assert "aws_security_group.alb" in _refs(rule["security_group_id"]), name
            assert (int(rule["from_port"]), int(rule["to_port"])) == (443, 443), name
            assert rule["ip_protocol"] == "tcp"
    assert open_rules == ["alb_https"]


def test_each_tier_admits_only_the_tier_above() -> None:
    sources = {"alb": set(), "app": {"alb", "app"}, "data": {"app", "data"}}
    for name, rule in _ingress_rules():
        target = re.search(r"aws_security_group\.(\w+)", _refs(rule["security_group_id"])).group(1)
        source = re.search(r"aws_security_group\.(\w+)", _refs(rule.get("referenced_security_group_id", "")))
        if source is None:
            assert target == "alb", f"{name}: only the ALB admits addresses rather than a tier"
            continue
        assert source.group(1) in sources[target], f"{name}: {target} must not admit {source.group(1)}"
    # The app tier accepts the ALB only on the gateway port.
    app_from_alb = resource("aws_vpc_security_group_ingress_rule", "app_from_alb")
    assert (int(app_from_alb["from_port"]), int(app_from_alb["to_port"])) == (8080, 8080)


def test_encryption_everywhere() -> None:
    sse = first(first(resource("aws_s3_bucket_server_side_encryption_configuration", "archive")["rule"])[
        "apply_server_side_encryption_by_default"])
    assert sse["sse_algorithm"] == "aws:kms" and "aws_kms_key.data" in sse["kms_master_key_id"]
    block = resource("aws_s3_bucket_public_access_block", "archive")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    assert "aws:SecureTransport" in _refs(resource("aws_s3_bucket_policy", "archive_tls_only"))
    rds = resource("aws_db_instance", "postgres")
    assert rds["storage_encrypted"] is True and rds["multi_az"] is True
    redis = resource("aws_elasticache_replication_group", "this")
    assert redis["at_rest_encryption_enabled"] is True and redis["transit_encryption_enabled"] is True
    encryption = first(resource("aws_msk_cluster", "this")["encryption_info"])
    assert "aws_kms_key.data" in encryption["encryption_at_rest_kms_key_arn"]
    in_transit = first(encryption["encryption_in_transit"])
    assert in_transit["client_broker"] == "TLS" and in_transit["in_cluster"] is True
    auth = first(resource("aws_msk_cluster", "this")["client_authentication"])
    assert auth["unauthenticated"] is False
    assert first(first(resource("aws_eks_cluster", "this")["encryption_config"])["provider"])["key_arn"]
    ecr = first(resource("aws_ecr_repository", "evpipe")["encryption_configuration"])
    assert ecr["encryption_type"] == "KMS"
    ebs = first(first(resource("aws_launch_template", "node")["block_device_mappings"])["ebs"])
    assert ebs["encrypted"] is True
    assert resource("aws_kms_key", "data")["enable_key_rotation"] is True
    assert resource("aws_secretsmanager_secret", "kafka_scram")["kms_key_id"]


def test_alb_serves_https_only_with_tls13() -> None:
    listeners = [body for rtype, _, body in resources() if rtype == "aws_lb_listener"]
    assert [(int(b["port"]), b["protocol"]) for b in listeners] == [(443, "HTTPS")]
    assert "TLS13" in listeners[0]["ssl_policy"]
    assert resource("aws_lb", "gateway")["drop_invalid_header_fields"] is True


def test_archive_moves_to_glacier() -> None:
    rule = first(resource("aws_s3_bucket_lifecycle_configuration", "archive")["rule"])
    assert rule["status"] == "Enabled"
    transition = first(rule["transition"])
    assert transition["storage_class"] == "GLACIER"
    assert "var.archive_glacier_after_days" in str(transition["days"])
    assert int(variable_default("archive_glacier_after_days")) > 0
    versioning = first(resource("aws_s3_bucket_versioning", "archive")["versioning_configuration"])
    assert versioning["status"] == "Enabled"  # replication needs it


def test_second_region_is_one_more_module_instance_with_a_replicated_archive() -> None:
    root = terraform(".")
    modules = {name: body for block in root["module"] for name, body in block.items()}
    assert set(modules) == {"primary", "dr"}
    assert {m["source"] for m in modules.values()} == {"./modules/region"}
    assert modules["primary"]["region"] != modules["dr"]["region"]
    assert (modules["primary"]["role"], modules["dr"]["role"]) == ("primary", "dr")
    assert "aws.dr" in _refs(modules["dr"]["providers"])
    assert variable_default("primary_region", ".") != variable_default("dr_region", ".")
    replication = resource("aws_s3_bucket_replication_configuration", "archive", ".")
    assert "module.primary.archive_bucket" in replication["bucket"]
    destination = first(first(replication["rule"])["destination"])
    assert "module.dr.archive_bucket_arn" in destination["bucket"]
    # The seeds' DR target: RPO 15 min - S3 Replication Time Control guarantees it for the archive.
    assert int(first(first(destination["replication_time"])["time"])["minutes"]) <= 15


def test_outputs_are_the_apps_own_settings() -> None:
    outputs = {name: body for block in terraform()["output"] for name, body in block.items()}
    settings = outputs["app_settings"]["value"]
    keys = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", str(settings)))
    assert {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "ARCHIVE_URI",
            "GATEWAY_BACKEND"} <= keys
    unknown = keys - known_env_vars()
    assert not unknown, f"app_settings outputs variables no evpipe process reads: {sorted(unknown)}"
    # Values the app accepts as they are (librdkafka names; an s3:// archive URI).
    assert '"SASL_SSL"' in str(settings) and '"SCRAM-SHA-512"' in str(settings)
    assert "s3://${aws_s3_bucket.archive.bucket}" in str(settings)
    from evpipe.settings import KafkaSettings

    KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512")
    for needed in ("kafka_scram_secret_arn", "archiver_role_arn", "gateway_role_arn", "gateway_target_group_arn",
                   "postgres_endpoint",
                   "redis_endpoint", "ecr_repository_url"):
        assert needed in outputs, needed


def _irsa_service_accounts() -> dict[str, str]:
    (block,) = [b for b in terraform().get("locals", []) if "irsa_service_accounts" in b]
    return dict(block["irsa_service_accounts"])


def test_archiver_role_is_bound_to_the_archiver_service_account() -> None:
    trust = _refs(resource("aws_iam_role", "irsa")["assume_role_policy"])
    assert "system:serviceaccount:evpipe:${each.value}" in trust
    assert _irsa_service_accounts()["archiver"] == "evpipe-archiver"
    objects = render("stage3")
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    archiver = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "evpipe-archiver")
    assert archiver["spec"]["template"]["spec"]["serviceAccountName"] == "evpipe-archiver" in names


def test_gateway_role_reaches_only_the_fallback_prefix() -> None:
    assert _irsa_service_accounts()["gateway"] == "evpipe-gateway"
    policy = _refs(resource("aws_iam_role_policy", "gateway")["policy"])
    assert "${aws_s3_bucket.archive.arn}/fallback/*" in policy and "s3:DeleteObject" in policy
    assert "${aws_s3_bucket.archive.arn}/*" not in policy  # never the archive itself


@pytest.mark.parametrize("overlay", ["stage1", "stage3"])
def test_network_policies_use_the_modules_subnets(overlay: str) -> None:
    from tests.infra.support import by_name, config_data

    objects = render(overlay)
    public, data = subnet_cidrs("public"), subnet_cidrs("data")
    alb = by_name(objects, "NetworkPolicy", "gateway-ingress-from-alb")
    (block,) = [p["ipBlock"]["cidr"] for r in alb["spec"]["ingress"] for p in r["from"] if "ipBlock" in p]
    assert ipaddress.ip_network(block).supernet_of(public[0]) and all(
        ipaddress.ip_network(block).supernet_of(s) for s in public)
    egress = by_name(objects, "NetworkPolicy", "app-egress-to-data-tier")
    (block,) = [p["ipBlock"]["cidr"] for r in egress["spec"]["egress"] for p in r["to"] if "ipBlock" in p]
    assert all(ipaddress.ip_network(block).supernet_of(s) for s in data)
    assert not any(ipaddress.ip_network(block).overlaps(s) for s in subnet_cidrs("app"))
    trusted = [ipaddress.ip_network(c) for c in config_data(objects)["GATEWAY_TRUSTED_PROXIES"].split(",")]
    assert all(any(s.subnet_of(t) for t in trusted) for s in public)


def test_cluster_enforces_network_policies() -> None:
    # EKS accepts NetworkPolicies without enforcing them unless the VPC CNI is told to.
    addon = resource("aws_eks_addon", "vpc_cni")
    assert addon["addon_name"] == "vpc-cni"
    assert re.search(r"enableNetworkPolicy\s*=\s*\\?\"true", str(addon["configuration_values"]))
    assert render("stage3") and any(o["kind"] == "NetworkPolicy" for o in render("stage3"))

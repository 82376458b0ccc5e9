"""Helpers for the deployment tests: render kustomize overlays (with kubectl), parse Terraform, read the app's settings.

Everything here reads files of this repository or imports the app's own modules; nothing
talks to a network or a cluster.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
TERRAFORM = REPO / "infra" / "terraform" / "aws"
OBSERVABILITY = REPO / "infra" / "observability"
OVERLAYS = ("stage1", "stage2", "stage3", "stage3-canary")
NAMESPACE = "evpipe"

# Settings classes of every process the manifests run: (module, class). A module that is not in
# this checkout yet is skipped (the deployment tests say which).
SETTINGS_CLASSES = (
    ("evpipe.settings", "StateSettings"),
    ("evpipe.settings", "ArchiveSettings"),  # the archiver's and replay's target
    ("gateway.settings", "GatewaySettings"),
    ("consumers.runtime.settings", "ConsumerSettings"),
    ("consumers.loader.settings", "LoaderSettings"),
    ("consumers.worker.settings", "WorkerSettings"),
    ("consumers.archiver.settings", "ArchiverSettings"),
)


# ---- kustomize -------------------------------------------------------------------------------


def kustomize_command() -> list[str]:
    """The real renderer: `kubectl kustomize` (kustomize is built into kubectl), else a standalone `kustomize`."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise AssertionError("the deployment tests render the overlays with `kubectl kustomize`: install kubectl "
                         "(https://kubernetes.io/docs/tasks/tools/) or a standalone kustomize")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's objects as kustomize renders them (the same objects `kubectl apply -k` sends)."""
    done = subprocess.run([*kustomize_command(), str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"kustomize failed for {overlay}: {done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Objects that run pods: Deployments, StatefulSets and (canary) Rollouts with a template."""
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Rollout"}
    return [o for o in objects if o["kind"] in kinds and "template" in o["spec"]]


def app_workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The evpipe processes' own workloads (not the self-hosted data stores)."""
    return [w for w in workloads(objects) if pod_labels(w).get("evpipe.io/tier") == "app"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions; {} matches all)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def config_data(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    maps = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("evpipe-config")]
    assert len(maps) == 1, "one evpipe-config ConfigMap per overlay"
    return dict(maps[0]["data"])


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


# ---- Terraform -------------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL quoting ('"x"'); strip it so tests compare plain values."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@functools.cache
def terraform(directory: str = "modules/region") -> dict[str, list[Any]]:
    """All .tf files of a directory merged: {'resource': [...], 'output': [...], ...}."""
    import hcl2

    merged: dict[str, list[Any]] = {}
    for path in sorted((TERRAFORM / directory).glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for key, blocks in parsed.items():
            if key.startswith("__"):
                continue
            merged.setdefault(key, []).extend(_unquote(blocks))
    return merged


def resources(directory: str = "modules/region") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every resource block."""
    for block in terraform(directory).get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                yield rtype, name, body


def resource(rtype: str, name: str, directory: str = "modules/region") -> dict[str, Any]:
    for t, n, body in resources(directory):
        if (t, n) == (rtype, name):
            return body
    raise AssertionError(f"no resource {rtype}.{name} in {directory}")


def first(block: Any) -> dict[str, Any]:
    """A nested block as one dict (python-hcl2 gives a list of blocks)."""
    return block[0] if isinstance(block, list) else block


def variable_default(name: str, directory: str = "modules/region") -> Any:
    for block in terraform(directory).get("variable", []):
        if name in block:
            return block[name].get("default")
    raise AssertionError(f"no variable {name}")


def subnet_cidrs(tier: str) -> list[ipaddress.IPv4Network]:
    """Evaluate the module's cidrsubnet(var.vpc_cidr, newbits, netnum) for one subnet tier (count 0..n-1)."""
    body = resource("aws_subnet", tier)
    match = re.fullmatch(
        r"\$\{cidrsubnet\(var\.vpc_cidr, (\d+), count\.index(?: \+ (\d+))?\)\}", str(body["cidr_block"]).strip()
    )
    assert match, f"unexpected cidr_block expression for {tier}: {body['cidr_block']}"
    newbits, offset = int(match.group(1)), int(match.group(2) or 0)
    vpc = ipaddress.ip_network(variable_default("vpc_cidr"))
    subnets = list(vpc.subnets(prefixlen_diff=newbits))
    return [subnets[offset + i] for i in range(int(body["count"]))]


# ---- the app -----------------------------------------------------------------------------------


def settings_classes() -> tuple[list[type], list[str]]:
    """The app's settings classes that exist in this checkout, and the modules that do not (yet)."""
    found, missing = [], []
    for module_name, class_name in SETTINGS_CLASSES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            missing.append(module_name)
            continue
        found.append(getattr(module, class_name))
    return found, missing


def known_env_vars() -> set[str]:
    """Every environment variable some evpipe process reads (pydantic-settings field names, upper-cased)."""
    classes, _ = settings_classes()
    return {name.upper() for cls in classes for name in cls.model_fields}

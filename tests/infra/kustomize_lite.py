"""A small kustomize renderer for machines without kustomize/kubectl: exactly the features infra/k8s uses.

Supported: `resources` (files and directories), `components`, `namespace`, `labels` (pairs,
includeSelectors false), `configMapGenerator` (literals; create and merge), `images` (newName,
newTag) and inline JSON6902 `patches` with a kind/name target (add/replace/remove). Generated
ConfigMaps keep their plain name (no content hash), which no test depends on. Anything else in
a kustomization is an error, so a new feature cannot be silently ignored here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "configMapGenerator",
             "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def build(directory: Path) -> list[dict[str, Any]]:
    return _apply(directory, [])


def _load(directory: Path) -> dict[str, Any]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomize features this renderer does not know: {sorted(unknown)}")
    return kustomization


def _apply(directory: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = _load(directory)
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects = objects + _apply(path, [])
        else:
            objects = objects + [d for d in yaml.safe_load_all(path.read_text()) if d]
    # Components see (and may merge into) everything accumulated so far, like kustomize.
    for entry in spec.get("components", []):
        objects = _apply(directory / entry, objects)
    for generator in spec.get("configMapGenerator", []):
        objects = _generate(objects, generator)
    for patch in spec.get("patches", []):
        objects = [_patch(o, patch) for o in objects]
    for image in spec.get("images", []):
        objects = [_set_image(o, image) for o in objects]
    for label in spec.get("labels", []):
        if label.get("includeSelectors"):
            raise ValueError("labels.includeSelectors is not supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _generate(objects: list[dict[str, Any]], generator: dict[str, Any]) -> list[dict[str, Any]]:
    data = dict(line.split("=", 1) for line in generator.get("literals", []))
    name = generator["name"]
    existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    if generator.get("behavior", "create") == "merge":
        if not existing:
            raise ValueError(f"configMapGenerator merge: no ConfigMap {name} to merge into")
        existing[0]["data"].update(data)
        return objects
    if existing:
        raise ValueError(f"configMapGenerator: ConfigMap {name} already exists")
    return objects + [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}]


def _patch(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    target = patch["target"]
    if obj["kind"] != target["kind"] or obj["metadata"]["name"] != target.get("name", obj["metadata"]["name"]):
        return obj
    obj = copy.deepcopy(obj)
    for op in yaml.safe_load(patch["patch"]):
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("add", "replace"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                node.insert(index, op["value"]) if op["op"] == "add" else node.__setitem__(index, op["value"])
            else:
                node[last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise ValueError(f"unsupported patch op {op['op']}")
    return obj


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec", {})
    if "jobTemplate" in spec:  # CronJob
        spec = spec["jobTemplate"].get("spec", {})
    return dict(spec.get("template", {}).get("spec", {}))


def _set_image(obj: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    template = _pod_spec(obj)
    for container in template.get("containers", []) + template.get("initContainers", []):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return obj

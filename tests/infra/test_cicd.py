"""CI/CD: the workflow runs the seeds' pipeline in order, production waits for approval, and the
ArgoCD Applications point at an overlay that renders. Also the image's Dockerfile, statically."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.support import K8S, REPO, render

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
ARGOCD = REPO / "infra" / "argocd"


def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as True
    return document


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _ancestors(jobs: dict[str, Any], name: str) -> set[str]:
    found: set[str] = set()
    for parent in _needs(jobs[name]):
        found |= {parent} | _ancestors(jobs, parent)
    return found


def test_pipeline_stages_run_their_tools() -> None:
    jobs = workflow()["jobs"]
    assert re.search(r"^ruff check", _runs(jobs["lint"]), re.MULTILINE)
    assert re.search(r"^mypy ", _runs(jobs["typecheck"]), re.MULTILINE)
    assert re.search(r"^pytest ", _runs(jobs["test"]), re.MULTILINE)
    assert "pip-audit" in _runs(jobs["security"])
    build = jobs["build"]["steps"]
    push = [s for s in build if str(s.get("uses", "")).startswith("docker/build-push-action")]
    assert push and push[0]["with"]["push"] is True
    assert "github.sha" in str(jobs["build"]["steps"]), "images are tagged with the commit, never :latest"


def test_deploys_follow_all_checks_and_production_follows_staging() -> None:
    jobs = workflow()["jobs"]
    assert {"lint", "typecheck", "test", "security"} <= _ancestors(jobs, "build")
    assert "build" in _ancestors(jobs, "deploy-staging")
    assert {"build", "deploy-staging"} <= _ancestors(jobs, "deploy-production")
    assert jobs["deploy-staging"]["environment"]["name"] == "staging"
    # GitHub's manual approval: required reviewers on the `production` environment.
    assert jobs["deploy-production"]["environment"]["name"] == "production"
    for name in ("deploy-staging", "deploy-production"):
        steps = _runs(jobs[name])
        assert "infra/argocd/deploy.sh" in steps and "infra/argocd/smoke.sh" in steps
    assert "refs/heads/main" in jobs["build"]["if"]


def test_actions_are_pinned_and_credentials_short_lived() -> None:
    document = workflow()
    assert document["permissions"] == {"contents": "read"}
    for job in document["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@(v\d+(\.\d+)*|\d+\.\d+\.\d+|[0-9a-f]{40})$", step["uses"]), step["uses"]
    assert document["jobs"]["build"]["permissions"]["id-token"] == "write"
    assert "aws-access-key-id" not in WORKFLOW.read_text()


def test_scripts_the_workflow_calls_exist() -> None:
    text = WORKFLOW.read_text()
    for script in set(re.findall(r"bash (\S+\.sh)", text)):
        path = REPO / script
        assert path.is_file(), script
        assert path.read_text().startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in path.read_text()


def applications() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(ARGOCD.glob("*.yaml"))]


def test_argocd_applications_sync_a_rendered_overlay() -> None:
    apps = applications()
    assert {a["metadata"]["name"] for a in apps} == {"evpipe-staging", "evpipe-production"}
    for app in apps:
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        source = app["spec"]["source"]
        overlay = Path(source["path"])
        assert (REPO / overlay / "kustomization.yaml").is_file()
        assert (REPO / overlay).resolve().parent == (K8S / "overlays").resolve()
        objects = render(overlay.name)
        assert app["spec"]["destination"]["namespace"] == "evpipe"
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        (image,) = source["kustomize"]["images"]
        assert image.split("=")[0] == "evpipe"
        # Autoscalers own replicas: every scaled kind must be ignored, or ArgoCD undoes the scaling.
        ignored = {(d["group"], d["kind"]) for d in app["spec"]["ignoreDifferences"]
                   if "/spec/replicas" in d["jsonPointers"]}
        scaled = {o["spec"]["scaleTargetRef"].get("kind", "Deployment") for o in objects
                  if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")}
        assert scaled <= {kind for _, kind in ignored}


# ---- Dockerfile -----------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, args))
    return stages


def test_dockerfile_base_is_pinned_and_multi_stage() -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in dockerfile() if i == "ARG" and "=" in a}
    stages = _stages()
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        # An exact patch release (or a digest), never a floating tag.
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", image), image
        assert "slim" in image or "distroless" in image or "alpine" in image, "small base"
    python = re.search(r"python:(\d+)\.(\d+)", args["PYTHON_IMAGE"])
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())
    assert python and (int(python.group(1)), int(python.group(2))) >= minimum


def test_dockerfile_runs_evpipe_as_a_non_root_user() -> None:
    runtime = _stages()[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 10000, "numeric non-root uid"
    (entrypoint,) = [a for i, a in runtime if i == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["evpipe"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "evpipe" in scripts
    # The manifests run the same uid, so runAsNonRoot holds without reading /etc/passwd.
    pod = render("stage3")
    gateway = next(o for o in pod if o["kind"] == "Deployment" and o["metadata"]["name"] == "evpipe-gateway")
    assert gateway["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)


@pytest.mark.parametrize("package", ["evpipe", "gateway", "consumers", "schemas"])
def test_dockerfile_copies_every_package(package: str) -> None:
    copied = {a.split()[0] for i, a in dockerfile() if i == "COPY" and "--from" not in a}
    assert package in copied and (REPO / package).is_dir()
    assert all(not a.startswith("http") for i, a in dockerfile() if i == "ADD"), "no remote ADD"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for entry in (".git", ".venv", ".evpipe", ".evpipe-test", "tests", ".env"):
        assert entry in ignored, entry
    copied = {a.split()[0] for i, a in dockerfile() if i == "COPY" and "--from" not in a}
    for source in copied:
        blocked = [i for i in ignored if source == i or source.startswith(i.rstrip("/") + "/")]
        assert not blocked, f"COPY {source} is excluded by .dockerignore {blocked}: the build would fail"
        assert (REPO / source).exists(), f"COPY {source}: no such path"

"""compose.yaml: every evpipe command exists in the CLI, images are pinned, only the LB publishes a port."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from evpipe.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
APP_IMAGE = "evpipe:local"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == APP_IMAGE}


def evpipe_argv(service: dict[str, Any]) -> list[str]:
    """The arguments the service passes to `evpipe` (the image's entrypoint)."""
    command = service.get("command", [])
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return argv[1:] if argv[:1] == ["evpipe"] else argv


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices) if actions else set()


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_every_app_command_is_a_real_subcommand(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    known = subcommands(parser)
    apps = app_services(services)
    assert apps, "no service runs the evpipe image"
    for name, service in apps.items():
        assert "entrypoint" not in service, f"{name}: the image's entrypoint is `evpipe`; keep it"
        argv = evpipe_argv(service)
        assert argv, f"{name}: no command (the image would only print --help)"
        assert argv[0] in known, f"{name}: `evpipe {argv[0]}` is not a subcommand (have {sorted(known)})"
        try:
            args = parser.parse_args(argv)  # the whole command line, options included, must parse
        except SystemExit:
            pytest.fail(f"{name}: `evpipe {' '.join(argv)}` does not parse (see the usage above)")
        assert callable(getattr(args, "func", None)), f"{name}: `evpipe {' '.join(argv)}` runs nothing"


def test_the_stage3_roles_run(services: dict[str, dict[str, Any]]) -> None:
    by_command: dict[str, list[str]] = {}
    for name, service in app_services(services).items():
        if not service.get("profiles"):
            by_command.setdefault(" ".join(evpipe_argv(service)), []).append(name)
    assert {"gateway", "archiver", "loader", "topics create"} <= set(by_command)
    kafka_gateways = [n for n in by_command["gateway"] if environment(services[n]).get("GATEWAY_BACKEND") == "kafka"]
    assert len(kafka_gateways) == 2, "two gateway replicas behind the load balancer"
    assert "KAFKA_PROCESS_ROLES" in environment(services["kafka"])  # KRaft, no ZooKeeper


def test_profiles_for_stages_1_and_2(services: dict[str, dict[str, Any]]) -> None:
    def in_profile(profile: str) -> dict[str, dict[str, Any]]:
        return {n: s for n, s in services.items() if profile in s.get("profiles", [])}

    stage1, stage2 = in_profile("stage1"), in_profile("stage2")
    assert "postgres" in stage1
    assert [environment(s).get("GATEWAY_BACKEND") for s in stage1.values() if evpipe_argv(s)[:1] == ["gateway"]] \
        == ["postgres"]
    assert {"redis", "postgres"} <= set(stage2)
    assert [environment(s).get("GATEWAY_BACKEND") for s in stage2.values() if evpipe_argv(s)[:1] == ["gateway"]] \
        == ["redis"]
    assert any(evpipe_argv(s)[:1] == ["worker"] for s in stage2.values())


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        if image == APP_IMAGE:
            assert service.get("build") in (".", {"context": "."}), f"{name}: {APP_IMAGE} is built from ./Dockerfile"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"


def test_only_the_load_balancer_publishes_a_port(services: dict[str, dict[str, Any]]) -> None:
    published = [(name, port) for name, s in services.items() for port in s.get("ports", [])]
    assert len(published) == 1, f"exactly one published port, got {published}"
    assert published[0][0] == "lb"
    assert not [n for n, s in services.items() if s.get("network_mode") == "host"]


def test_dependencies_and_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for target in depends if isinstance(depends, list) else depends.keys():
            assert target in services, f"{name} depends on unknown service {target}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
    lb_conf = (ROOT / "infra/compose/nginx.conf").read_text()
    for upstream in ("gateway:8080", "gateway-stage1:8080", "gateway-stage2:8080"):
        assert upstream in lb_conf
    with_alias = [n for n, s in services.items() if "gateway" in network_aliases(s)]
    assert len(with_alias) == 2, "the LB's `gateway` name must resolve to both stage-3 replicas"


def network_aliases(service: dict[str, Any]) -> list[str]:
    networks = service.get("networks") or {}
    if not isinstance(networks, dict):
        return []
    return [alias for net in networks.values() for alias in (net or {}).get("aliases", [])]

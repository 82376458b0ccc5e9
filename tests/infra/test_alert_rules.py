"""The alert rules, checked and run by Prometheus's own promtool.

`promtool check rules` validates each rule file as Prometheus loads it; `promtool test rules` runs
the unit tests next to it (prometheus/*.test.yaml), which feed series into the rules and say when
each alert must fire and when it must stay silent. The tests here also make sure that every alert
has both: a case that fires and a case, in a separate input, that stays silent after its `for`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.support import OBSERVABILITY

PROMETHEUS = OBSERVABILITY / "prometheus"
INSTALL = "bash infra/local/install-promtool.sh"


def rule_files() -> list[Path]:
    """Every Prometheus rule file (a YAML document with rule `groups`) in the observability folder."""
    found = []
    for path in sorted(PROMETHEUS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and "groups" in document:
            found.append(path)
    return found


def unit_test_files() -> list[Path]:
    return sorted(PROMETHEUS.glob("*.test.yaml"))


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of every rule file, by name."""
    return {rule["alert"]: rule for path in rule_files() for rule in rules(path) if "alert" in rule}


def duration_s(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def cases() -> Iterator[tuple[str, dict[str, Any]]]:
    """(test name, alert_rule_test) of every unit test file."""
    for path in unit_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                yield f"{path.name}: {test.get('name', '?')}", case


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool is not installed (Debian's prometheus package): run {INSTALL}")
    return found


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_rules_and_their_unit_tests_are_found() -> None:
    assert [p.name for p in rule_files()] == ["alerts.yaml"]
    assert [p.name for p in unit_test_files()] == ["alerts.test.yaml"]
    assert len(alerts()) >= 15


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_checks_the_rule_file(promtool: str, path: Path) -> None:
    done = _run(promtool, "check", "rules", path.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules(path))} rules found" in done.stdout


def test_promtool_check_fails_on_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The check can fail: an expression Prometheus cannot parse is refused."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(up\n")
    done = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0


@pytest.mark.parametrize("path", unit_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, path: Path) -> None:
    done = _run(promtool, "test", "rules", path.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("path", unit_test_files(), ids=lambda p: p.name)
def test_unit_tests_load_every_rule_file(path: Path) -> None:
    loaded = {(PROMETHEUS / name).resolve() for name in yaml.safe_load(path.read_text())["rule_files"]}
    assert loaded == {p.resolve() for p in rule_files()}


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_has_a_firing_and_a_silent_case(name: str) -> None:
    """A firing case, and a silent one evaluated after the rule's `for` in a test that never fires it.

    Checks in a firing test before its `for` has passed are silent too, but prove nothing about the
    threshold; hence the silent case must come from a test of its own.
    """
    wait = duration_s(alerts()[name].get("for", "0s"))
    mine = [(test, case) for test, case in cases() if case["alertname"] == name]
    firing_tests = {test for test, case in mine if case.get("exp_alerts")}
    silent = [case for test, case in mine if test not in firing_tests and not case.get("exp_alerts")
              and duration_s(str(case["eval_time"])) >= wait]
    assert firing_tests, f"{name}: no case in which it fires"
    assert silent, f"{name}: no case that stays silent after its `for` ({wait} s) in a test of its own"


def test_every_case_names_an_existing_alert() -> None:
    unknown = {case["alertname"] for _, case in cases()} - set(alerts())
    assert not unknown, f"unit tests of alerts that do not exist: {sorted(unknown)}"

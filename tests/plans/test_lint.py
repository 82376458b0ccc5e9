"""Plan files: loading, compiling and `evpipe plans lint` (errors name the file and the JSON pointer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evpipe.plans.load import load_directory
from evpipe.plans.model import Mode, PlanError, Unplanned
from tests.plans.samples import ORDER_SCHEMA, plan, write


def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", "plans", "lint", str(directory)],
                          capture_output=True, text=True, timeout=60)


def test_a_yaml_and_a_json_plan_load_and_compile(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", plan("web", version=3, mode="tag", unplanned="reject"))
    (tmp_path / "app.json").write_text(json.dumps(plan("app")))
    (tmp_path / "README.md").write_text("not a plan")
    plans = load_directory(tmp_path).plans
    assert sorted(plans) == ["app", "web"]
    web = plans["web"]
    assert (web.version, web.mode, web.unplanned, web.file) == (3, Mode.TAG, Unplanned.REJECT, "web.yaml")
    assert web.events["order_completed"].properties_validator is not None
    assert web.events["order_completed"].context_validator is None


def test_unquoted_yaml_off_is_the_off_mode(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", "source: web\nversion: 1\nmode: off\nevents: {}\n")
    assert load_directory(tmp_path).plans["web"].mode is Mode.OFF


@pytest.mark.parametrize(("document", "expected"), [
    ("source: [", "web.yaml: /: not valid YAML"),
    ({"version": 1, "events": {}}, "web.yaml: /: 'source' is required"),
    ({**plan(), "version": "one"}, "web.yaml: /version: expected an integer"),
    ({**plan(), "mode": "strict"}, "web.yaml: /mode: expected one of enforce, tag, off, got 'strict'"),
    ({**plan(), "owner": "x"}, "web.yaml: /owner: unknown key"),
    (plan(order_completed={"properties": {"type": "object", "properties": {"revenue": {"type": "money"}}}}),
     "web.yaml: /events/order_completed/properties/properties/revenue/type: not a valid JSON Schema"),
    (plan(order_completed={"properties": ORDER_SCHEMA, "mode": "loud"}),
     "web.yaml: /events/order_completed/mode: expected one of"),
    ({**plan(), "events": {"a/b": {"properties": []}}}, "web.yaml: /events/a~1b/properties: expected a JSON Schema"),
])
def test_a_bad_plan_names_file_and_pointer(tmp_path: Path, document: object, expected: str) -> None:
    write(tmp_path, "web.yaml", document)
    with pytest.raises(PlanError) as caught:
        load_directory(tmp_path)
    assert str(caught.value).startswith(expected), str(caught.value)
    result = lint(tmp_path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_lint_reports_every_bad_file_and_duplicate_sources(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", plan("web"))
    write(tmp_path, "b.yaml", plan("web"))
    write(tmp_path, "c.yaml", {**plan("app"), "version": 0})
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "b.yaml: /source: source 'web' already has a plan in a.yaml" in result.stderr
    assert "c.yaml: /version: expected an integer of 1 or more" in result.stderr
    assert "3 plan file(s), 1 good, 2 with problems" in result.stdout


def test_lint_of_good_plans_and_of_a_missing_directory(tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", plan("web"))
    good = lint(tmp_path)
    assert (good.returncode, good.stdout.strip()) == (0, "1 plan file(s), 1 good, 0 with problems")
    missing = lint(tmp_path / "nope")
    assert missing.returncode == 2
    assert "not a directory" in missing.stderr and "Traceback" not in missing.stderr

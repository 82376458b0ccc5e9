"""Read a directory of plan files into one PlanSet: all of it is good, or nothing of it is used."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evpipe.plans.model import Plan, PlanError, parse_plan

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class PlanSet:
    """Every source's plan, by source_id; ``fingerprint`` tells whether the files changed since."""

    plans: dict[str, Plan] = field(default_factory=dict)
    fingerprint: tuple[tuple[str, object, object], ...] = ()  # (name, size or ETag, mtime) per file


def plan_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PlanError(str(directory), "", "not a directory")
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def fingerprint(directory: Path) -> tuple[tuple[str, object, object], ...]:
    """Names, sizes and modification times: cheap enough to take every few seconds."""
    stats: list[tuple[str, object, object]] = []
    for path in plan_files(directory):
        st = path.stat()
        stats.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(stats)


def load_directory(directory: Path) -> PlanSet:
    """Every plan file of ``directory``, checked and compiled; raises PlanError at the first bad one."""
    before = fingerprint(directory)
    return PlanSet(one_per_source(parse_plan(read_document(path), path.name) for path in plan_files(directory)),
                   before)


def one_per_source(parsed: Iterable[Plan]) -> dict[str, Plan]:
    """The plans by source; raises PlanError at a second file for one source."""
    plans: dict[str, Plan] = {}
    for plan in parsed:
        if plan.source in plans:
            raise PlanError(plan.file, "/source", f"source {plan.source!r} already has a plan in "
                            f"{plans[plan.source].file}: one file per source")
        plans[plan.source] = plan
    return plans


def lint_directory(directory: Path) -> list[PlanError]:
    """Every file's first problem (not just the first file's): what `evpipe plans lint` reports."""
    errors: list[PlanError] = []
    sources: dict[str, str] = {}
    for path in plan_files(directory):
        try:
            plan = parse_plan(read_document(path), path.name)
        except PlanError as exc:
            errors.append(exc)
            continue
        if plan.source in sources:
            errors.append(PlanError(path.name, "/source", f"source {plan.source!r} already has a plan in "
                                    f"{sources[plan.source]}: one file per source"))
        sources.setdefault(plan.source, path.name)
    return errors


def read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(path.name, "", f"cannot read: {exc}") from None
    return parse_document(path.name, text)


def parse_document(name: str, text: str) -> Any:
    """A plan file's text as JSON (``*.json``) or YAML (the others), wherever it was read from."""
    is_json = name.endswith(".json")
    try:
        return json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PlanError(name, "", f"not valid {'JSON' if is_json else 'YAML'}: {exc}") from None


def load_file(path: Path) -> Plan:
    """One plan file (what `plans diff` compares)."""
    if not path.is_file():
        raise PlanError(os.fspath(path), "", "no such file")
    return parse_plan(read_document(path), path.name)

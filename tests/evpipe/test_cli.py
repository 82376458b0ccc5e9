"""`evpipe --help` lists the subcommands that exist, and each has a --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evpipe.cli import build_parser


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_top_level_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "evpipe", "--help"], capture_output=True, text=True, check=True).stdout
    names = _subcommands()
    assert {"dev", "topics"} <= set(names)
    for name in names:
        assert f"    {name}" in out


@pytest.mark.parametrize("name", _subcommands())
def test_each_subcommand_has_help(name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "evpipe", name, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"usage: evpipe {name}" in result.stdout


def test_bad_environment_names_the_variable() -> None:
    env = {"KAFKA_PARTITIONS": "many", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "evpipe", "topics", "create"], capture_output=True, text=True,
                            env=env)
    assert result.returncode != 0
    assert "KAFKA_PARTITIONS" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_connection_urls_are_printed_without_passwords() -> None:
    from evpipe.settings import redact_url

    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgresql://app:s3cret@db:5432/events") == "postgresql://app:***@db:5432/events"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"

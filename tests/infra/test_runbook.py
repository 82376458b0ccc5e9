"""The runbook's (docs/operations.md) commands, metric names and DR targets match the code and the infrastructure."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

import pytest

from tests.infra.support import REPO, render
from tests.infra.test_observability import COMPONENTS, _exported

RUNBOOK = (REPO / "docs" / "operations.md").read_text()

# A synopsis (`--to-datetime ISO \| --to-earliest`, `[--execute]`) or a placeholder (`<now>`) is not a command line.
SYNOPSIS = re.compile(r"<[a-z]|[\[(]--|\\\|")


def runbook_commands() -> list[str]:
    """`evpipe ...` command lines from code blocks and inline code spans (synopses left out)."""
    blocks = re.findall(r"```bash\n(.*?)```", RUNBOOK, re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    inline = re.findall(r"`(evpipe [^`]+)`", RUNBOOK.replace("\n   ", " "))
    return [c for c in lines + inline if c.startswith("evpipe ") and not SYNOPSIS.search(c)]


def test_runbook_commands_parse_with_the_real_cli() -> None:
    from evpipe.cli import build_parser

    commands = runbook_commands()
    assert len(commands) >= 5
    parser = build_parser()
    top = next(a for a in parser._actions if a.dest == "command").choices
    pending = []
    for command in commands:
        argv = _evpipe_argv(command)
        if argv[0] not in top:
            pending.append(command)
            continue
        if _names_a_command(parser, argv):
            continue  # prose naming a command (`evpipe tail`), not a command line
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                parser.parse_args(argv)
            except SystemExit:
                message = stderr.getvalue()
                if "invalid choice" in message and argv[0] in ("replay",):
                    pending.append(command)  # the sub-action is not in this checkout yet
                    continue
                pytest.fail(f"runbook command does not parse: {command}\n{message}")
    if pending:
        pytest.skip(f"commands whose module is not in this checkout yet: {pending}")


def _evpipe_argv(command: str) -> list[str]:
    """The arguments of the `evpipe` command of a shell line: a trailing `# comment` and what a pipe feeds
    go (`evpipe tail events | jq ...`)."""
    tokens = shlex.split(command, comments=True)
    return (tokens[:tokens.index("|")] if "|" in tokens else tokens)[1:]


def _names_a_command(parser: argparse.ArgumentParser, argv: list[str]) -> bool:
    """Whether every word is a (sub)command name, e.g. `tail` or `fallback drain`."""
    for word in argv:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if not isinstance(choices, dict) or word not in choices:
            return False
        parser = choices[word]
    return True


def test_evpipe_argv_of_shell_lines() -> None:
    assert _evpipe_argv("evpipe tail events -n 5   # the first five") == ["tail", "events", "-n", "5"]
    assert _evpipe_argv("evpipe tail e --grep 'a|b' | jq -r .value") == ["tail", "e", "--grep", "a|b"]


def test_runbook_metric_names_are_exported() -> None:
    named = set(re.findall(r"\b(evpipe_[a-z_]+)\b", RUNBOOK))
    assert len(named) >= 5
    exported: set[str] = set()
    for scrape in COMPONENTS.values():
        with contextlib.suppress(ModuleNotFoundError):
            exported |= _exported(scrape())
    prefixes = tuple(f"evpipe_{c}_" for c in COMPONENTS if any(n.startswith(f"evpipe_{c}_") for n in exported))
    checkable = {n for n in named if n.startswith(prefixes)}
    assert checkable and checkable <= exported, sorted(checkable - exported)


def test_decision_tree_and_dr_targets() -> None:
    section = RUNBOOK.split("## Scaling by stage", 1)[1].split("\n## ", 1)[0]
    for needed in ("< 500 ev/s", "500 - 5,000 ev/s", "5,000 - 50,000+ ev/s", "move up when"):
        assert needed in section, needed
    for overlay in ("stage1", "stage2", "stage3"):
        assert f"`{overlay}`" in section and render(overlay)
    dr = RUNBOOK.split("## Disaster recovery", 1)[1].split("\n## ", 1)[0]
    assert "RPO 15 min, RTO 30 min" in dr
    rows = [line for line in dr.splitlines() if line.startswith("| ") and "---" not in line]
    components = {row.split("|")[1].strip().split(" ")[0].lower() for row in rows[1:]}
    assert {"gateway", "kafka", "s3", "clickhouse", "postgres", "redis", "region"} <= components
    assert all(len(row.split("|")) == 6 for row in rows), "component | protection | RPO | RTO"
    assert "evpipe replay archive" in dr

"""docs/configuration.md from the settings classes: one table of environment variables per process.

Every process reads its environment into one pydantic settings class; this
module renders each class's fields (variable, default, meaning) as a Markdown
table, so the documentation is the code. Variables shared through the mixins
of :mod:`evpipe.settings` (and the consumer runtime's) get one table each; a
process's own table lists its own variables and the shared ones whose default
or meaning it overrides.

    python -m evpipe.configdocs            # rewrite docs/configuration.md
    python -m evpipe.configdocs --check    # exit 1 if it is stale

``tests/test_docs.py`` keeps the committed file equal to what this renders.
Only the part between the markers is generated; the text around it is kept.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"

BEGIN = "<!-- BEGIN GENERATED: `python -m evpipe.configdocs` writes this part from the settings classes -->"
END = "<!-- END GENERATED -->"

INTRO = """\
# Configuration

Every process reads environment variables into one typed settings object at start and exits with a message
naming the bad variable. `evpipe COMMAND --help` lists each command's variables. The tables below are
generated from those settings classes (`python -m evpipe.configdocs`; a test keeps this page in sync).
"""

# (heading, "module:Class"): the mixins several processes share. A process's table leaves out what they list.
SHARED: tuple[tuple[str, str], ...] = (
    ("Logging", "evpipe.settings:LogSettings"),
    ("Local state", "evpipe.settings:StateSettings"),
    ("Kafka", "evpipe.settings:KafkaSettings"),
    ("ClickHouse", "evpipe.settings:ClickHouseSettings"),
    ("Postgres", "evpipe.settings:PostgresSettings"),
    ("Redis", "evpipe.settings:RedisSettings"),
    ("Archive", "evpipe.settings:ArchiveSettings"),
    ("Privacy", "evpipe.privacy.settings:PrivacySettings"),
    ("Tracking plans (archiver, loader)", "evpipe.plans.settings:PlanSettings"),
    ("Consumer runtime", "consumers.runtime.settings:ConsumerSettings"),
)

# (heading, candidate "module:Class" locations, command). The first location that imports is used; a
# process none of whose locations imports is left out (its module is not in this checkout).
PROCESSES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Gateway", ("gateway.settings:GatewaySettings",), "evpipe gateway"),
    ("Archiver", ("consumers.archiver.settings:ArchiverSettings",), "evpipe archiver"),
    ("Loader", ("consumers.loader.settings:LoaderSettings",), "evpipe loader"),
    ("Worker", ("consumers.worker.settings:WorkerSettings",), "evpipe worker"),
    ("ClickHouse server", ("evpipe.chserver.settings:ClickHouseServerSettings",), "evpipe clickhouse serve"),
    ("Replay from the archive", ("consumers.replay.cli:ArchiveReplaySettings",), "evpipe replay archive"),
    ("Local stack", ("evpipe.local.stack:StackSettings",), "evpipe dev"),
    ("Privacy requests", ("consumers.privacy.settings:PrivacyCommandSettings",), "evpipe privacy"),
)

# Commands that read shared variables only: (command, "module:Class").
SHARED_ONLY: tuple[tuple[str, str], ...] = (
    ("evpipe topics create", "evpipe.settings:KafkaSettings"),
    ("evpipe tail", "evpipe.settings:KafkaSettings"),
    ("evpipe replay offsets", "evpipe.settings:KafkaSettings"),
    ("evpipe dlq show / redrive", "evpipe.settings:KafkaSettings"),
    ("evpipe query", "consumers.loader.query_cli:QuerySettings"),
)

KIB = 1024


def _import(location: str) -> type[Any]:
    module, _, name = location.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _first_importable(locations: tuple[str, ...]) -> tuple[str, type[Any]] | None:
    for location in locations:
        try:
            return location, _import(location)
        except ModuleNotFoundError:
            continue
    return None


def _size(value: int) -> str:
    for unit, factor in (("GiB", KIB**3), ("MiB", KIB**2), ("KiB", KIB)):
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return str(value)


def default_text(name: str, info: FieldInfo) -> str:
    """A field's default as it would be written in the environment."""
    value = info.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"  # distinct from empty where empty means something of its own (GATEWAY_FALLBACK_URI)
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = f"`{value}`"
    if isinstance(value, int) and "bytes" in name and value >= KIB:
        text += f" ({_size(value)})"
    return text


def _cell(text: str) -> str:
    """One table cell: one line, pipes and angle brackets escaped (GitHub drops unknown tags)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def table(fields: dict[str, FieldInfo]) -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in fields.items():
        lines.append(f"| `{name.upper()}` | {default_text(name, info)} | {_cell(info.description or '')} |")
    return "\n".join(lines)


def _same(a: FieldInfo, b: FieldInfo) -> bool:
    return a.default == b.default and a.description == b.description


def own_fields(cls: type[Any], shared: list[type[Any]]) -> dict[str, FieldInfo]:
    """Fields of cls that no shared class it builds on lists with the same default and meaning."""
    bases = [s for s in shared if issubclass(cls, s) and s is not cls]
    kept = {}
    for name, info in cls.model_fields.items():
        if any(name in s.model_fields and _same(info, s.model_fields[name]) for s in bases):
            continue
        kept[name] = info
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _groups(cls: type[Any], shared: list[type[Any]]) -> list[str]:
    return [f"[{h}](#{slug(h)})" for (h, _), s in zip(SHARED, shared, strict=True) if issubclass(cls, s)]


def render() -> str:
    """The generated part of docs/configuration.md (markers included)."""
    shared = [_import(location) for _, location in SHARED]
    processes = []
    for heading, locations, command in PROCESSES:
        found = _first_importable(locations)
        if found is not None:
            processes.append((heading, found[0], found[1], command))
    commands = [(command, cls) for _, _, cls, command in processes]
    commands += [(command, _import(location)) for command, location in SHARED_ONLY]

    out = [BEGIN, "", "## Shared variables", "",
           "Read by several processes; each process's section below names the groups it reads."]
    for (heading, location), cls in zip(SHARED, shared, strict=True):
        readers = ", ".join(f"`{command}`" for command, c in commands if issubclass(c, cls))
        out += ["", f"### {heading}", "", f"`{location.replace(':', '.')}`, read by {readers}.", "",
                table(own_fields(cls, shared))]
    for heading, location, cls, command in processes:
        groups = _groups(cls, shared)
        reads = f" and the shared {', '.join(groups)} variables" if groups else ""
        out += ["", f"## {heading}", "",
                (f"`{command}` reads `{location.replace(':', '.')}`: the variables below{reads}. "
                 "A variable listed both here and under a shared group has this process's default."), "",
                table(own_fields(cls, shared))]
    out += ["", "## Commands without variables of their own", ""]
    for command, location in SHARED_ONLY:
        cls = _import(location)
        own = [n for n in cls.model_fields if not any(issubclass(cls, s) and n in s.model_fields for s in shared)]
        extra = f"; also {', '.join(f'`{n.upper()}`' for n in own)}" if own else ""
        out.append(f"* `{command}`: the shared {', '.join(_groups(cls, shared))} variables{extra}.")
    out += ["", END]
    return "\n".join(out) + "\n"


def update(text: str | None) -> str:
    """The page with its generated part replaced (a new page when there is none yet)."""
    generated = render()
    if not text or BEGIN not in text or END not in text:
        return f"{INTRO}\n{generated}"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + generated.rstrip("\n") + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evpipe.configdocs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    parser.add_argument("--path", type=Path, default=DOC, help="the page to write (default: %(default)s)")
    args = parser.parse_args(argv)
    current = args.path.read_text() if args.path.exists() else None
    wanted = update(current)
    if args.check:
        if current != wanted:
            print(f"{args.path} is stale: run `python -m evpipe.configdocs`", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(wanted)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

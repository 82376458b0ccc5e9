"""README.md and docs/ stay in step with the code: the generated configuration page is current, the README stays
a front door, and every relative link (and anchor) points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evpipe.configdocs import DOC, slug, update

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without fenced code blocks (links and headings there are not links or headings)."""
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(page.read_text()).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if not match:
            continue
        base = slug(match.group(1).replace("`", ""))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(page: Path) -> list[str]:
    prose = _prose(page.read_text())
    # A link text may hold a code span ([`schemas/fields.py`](...)); a code span alone is not a link.
    links = LINK.findall(prose)
    quoted = {m for span in CODE_SPAN.findall(prose) for m in LINK.findall(span)}
    return [t for t in links if t not in quoted and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_configuration_page_is_current() -> None:
    assert DOC.exists(), "docs/configuration.md is missing: run `python -m evpipe.configdocs`"
    text = DOC.read_text()
    assert text == update(text), "docs/configuration.md is stale: run `python -m evpipe.configdocs`"


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_page_is_linked_from_the_readme_or_the_index() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    linked |= {(ROOT / "docs" / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "docs" / "README.md")}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages nobody links to: {orphans}"


def test_readme_commands_exist() -> None:
    from evpipe.cli import build_parser

    section = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    named = {m.split()[1] for m in re.findall(r"^\| `(evpipe [a-z]+)", section, re.MULTILINE)}
    parser = build_parser()
    top = next(a for a in parser._actions if a.dest == "command").choices
    assert len(named) >= 8
    assert named <= set(top), f"README names commands `evpipe --help` does not have: {sorted(named - set(top))}"

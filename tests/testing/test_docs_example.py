"""The example test in docs/testing.md runs, against the evpipe_pipeline fixture, as it is printed there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from evpipe.testing import Pipeline

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def documented_example() -> str:
    section = PAGE.read_text().split("## Testing your code against evpipe", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/testing.md has no python example under 'Testing your code against evpipe'"
    return match.group(1)


@pytest.mark.slow
def test_the_documented_example_passes(evpipe_pipeline: Pipeline) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(documented_example(), str(PAGE), "exec"), namespace)  # noqa: S102 (our own page)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0](evpipe_pipeline)

"""The layering the import-linter contracts (pyproject.toml) cannot see: infra/ is configuration and scripts only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_infra_holds_no_python() -> None:
    """Nothing can import infra/: deployment files and shell scripts live there, code lives in the packages."""
    assert sorted(str(p.relative_to(ROOT)) for p in (ROOT / "infra").rglob("*.py")) == []


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout

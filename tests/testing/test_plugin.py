"""The pytest plugin every evpipe install registers: found through its entry point, cheap when no test uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("pyarrow", "confluent_kafka", "clickhouse_connect", "pydantic", "testcontainers", "docker",
         "evpipe.local.daemon", "evpipe.testing.local")


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    probe = f"import sys, evpipe.testing.plugin; print([m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_fixture_comes_from_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    listed = _pytest(tmp_path, "--fixtures")
    assert "evpipe_pipeline [session scope]" in listed.stdout
    unused = _pytest(tmp_path)  # a session that never asks for a pipeline starts none
    assert unused.returncode == 0 and "1 passed" in unused.stdout, unused.stdout + unused.stderr


def test_ini_options_choose_the_scope_and_refuse_nonsense(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nevpipe_pipeline_scope = module\n")
    assert "evpipe_pipeline [module scope]" in _pytest(tmp_path, "--fixtures").stdout
    (tmp_path / "pytest.ini").write_text("[pytest]\nevpipe_pipeline_backend = podman\n")
    refused = _pytest(tmp_path)
    assert refused.returncode == 4, refused.stdout + refused.stderr  # pytest's usage error
    assert "evpipe_pipeline_backend = 'podman': expected one of local, docker" in refused.stderr

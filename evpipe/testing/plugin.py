"""The pytest plugin behind the ``evpipe_pipeline`` fixture (entry point ``pytest11``: ``evpipe``).

pytest loads this module in every session once evpipe is installed, so it
imports pytest alone; the pipeline's code is imported when a test asks for the
fixture. Two ini options (``pytest.ini``, or ``[tool.pytest.ini_options]``):

* ``evpipe_pipeline_scope``: ``session`` (default: one pipeline per test run, or
  per xdist worker), ``module`` or ``function`` (a fresh pipeline per test).
* ``evpipe_pipeline_backend``: ``local`` (default: processes on this machine) or
  ``docker`` (containers: the evpipe image, apache/kafka, clickhouse-server).

Disable the plugin with ``-p no:evpipe``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evpipe.testing.pipeline import Pipeline

SCOPES = ("session", "package", "module", "class", "function")
BACKENDS = ("local", "docker")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("evpipe_pipeline_scope", f"scope of the evpipe_pipeline fixture: {', '.join(SCOPES)}",
                  default="session")
    parser.addini("evpipe_pipeline_backend", "where evpipe_pipeline runs: local (processes) or docker (containers)",
                  default="local")


def pytest_configure(config: pytest.Config) -> None:
    # Here rather than in the fixture: a bad value is a usage error at start, not an internal error later.
    for name, choices in (("evpipe_pipeline_scope", SCOPES), ("evpipe_pipeline_backend", BACKENDS)):
        value = _ini(config, name)
        if value not in choices:
            raise pytest.UsageError(f"{name} = {value!r}: expected one of {', '.join(choices)}")


def _ini(config: pytest.Config, name: str) -> str:
    return str(config.getini(name)).strip()


def _scope(fixture_name: str, config: pytest.Config) -> str:
    return _ini(config, "evpipe_pipeline_scope")


@pytest.fixture(scope=_scope)  # type: ignore[arg-type]
def evpipe_pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A private evpipe pipeline (broker, ClickHouse, gateway, archiver, loader), stopped afterwards.

    Yields an :class:`evpipe.testing.Pipeline`: ``send(events)``, ``wait_loaded(ids)``,
    ``wait_archived(ids)``, ``query(sql)``, ``archive_rows()``, ``gateway_url``, ``api_key``.
    """
    with _runner(_ini(request.config, "evpipe_pipeline_backend"), tmp_path_factory.mktemp("evpipe")) as pipeline:
        yield pipeline


def _runner(backend: str, workdir: Path) -> AbstractContextManager[Pipeline]:
    if backend == "docker":
        from evpipe.testing.containers import ContainerPipeline

        return ContainerPipeline(workdir)
    from evpipe.testing.local import LocalPipeline

    return LocalPipeline(workdir)

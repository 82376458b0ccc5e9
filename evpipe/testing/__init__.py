"""evpipe.testing: integration tests against a real, private evpipe pipeline.

Installing evpipe registers a pytest plugin (:mod:`evpipe.testing.plugin`) whose
``evpipe_pipeline`` fixture starts a broker, ClickHouse, the gateway, the
archiver and the loader on free ports, each as its own process, and yields a
:class:`Pipeline` to send events through and read them back. Outside pytest, the
same runs under ``with LocalPipeline(directory) as pipeline:`` or, with Docker,
``with ContainerPipeline(directory) as pipeline:``. See docs/testing.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evpipe.testing.containers import ContainerPipeline
    from evpipe.testing.local import LocalPipeline
    from evpipe.testing.pipeline import Endpoints, Pipeline, PipelineError

__all__ = ["ContainerPipeline", "Endpoints", "LocalPipeline", "Pipeline", "PipelineError"]

# Imported on first use: pytest imports this package with the plugin in every session of everyone who
# installs evpipe, most of which never ask for a pipeline.
_HOMES = {"ContainerPipeline": "containers", "LocalPipeline": "local", "Endpoints": "pipeline",
          "Pipeline": "pipeline", "PipelineError": "pipeline"}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'evpipe.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"evpipe.testing.{_HOMES[name]}"), name)

"""ContainerPipeline: the same interface with apache/kafka, clickhouse-server and the evpipe image in Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from evpipe.testing import ContainerPipeline, PipelineError
from evpipe.testing.containers import docker_engine_answers


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run builds the evpipe image
def test_events_through_the_containers(tmp_path: Path) -> None:
    if not docker_engine_answers():
        pytest.skip("no Docker engine answers (DOCKER_HOST or the default socket): ContainerPipeline needs one")
    with ContainerPipeline(tmp_path) as pipeline:
        ids = pipeline.send([{"type": "signup", "user_id": f"u{i}"} for i in range(20)])
        pipeline.wait_loaded(ids, timeout=120)
        pipeline.wait_archived(ids, timeout=120)
        assert pipeline.query("SELECT count() FROM events WHERE type = 'signup'") == [(20,)]
        assert pipeline.archive_rows().num_rows == 20


def test_without_docker_it_says_so(tmp_path: Path) -> None:
    if docker_engine_answers():
        pytest.skip("a Docker engine answers here")
    with pytest.raises(PipelineError, match="no Docker engine answers"):
        ContainerPipeline(tmp_path).start()

"""`evpipe archiver`: help text, configuration errors and the start-up path (no servers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from consumers.archiver.sink import ParquetSink
from evpipe.cli import build_parser, main


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["archiver", "--help"])
    out = capsys.readouterr().out
    for name in ("ARCHIVE_URI", "ARCHIVER_GROUP", "CONSUMER_BATCH_MAX_BYTES", "CONSUMER_BUFFER_MAX_BYTES",
                 "CONSUMER_SESSION_TIMEOUT_MS", "METRICS_PORT", "S3_ENDPOINT_URL", "ARCHIVER_DEDUP_WINDOW_S",
                 "ARCHIVER_DEDUP_MAX_IDS"):
        assert name in out
    assert "dt=YYYY-MM-DD/hour=HH" in out


@pytest.mark.parametrize(("env", "message"), [
    ({"ARCHIVE_URI": "ftp://host/x"}, "unsupported scheme"),
    ({"CONSUMER_BATCH_MAX_MESSAGES": "0"}, "CONSUMER_BATCH_MAX_MESSAGES"),
    ({"METRICS_PORT": "99999"}, "METRICS_PORT"),
])
def test_bad_settings_fail_clearly(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        main(["archiver"])
    assert "configuration error" in str(exc.value) and message in str(exc.value)


def test_start_removes_stale_temp_files_and_passes_the_dedup_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import consumers.runtime

    started: list[object] = []

    class NoLoop:  # the consumer loop itself is tested against the broker elsewhere
        def __init__(self, _settings: object, sink: object, *_args: object, **_kwargs: object) -> None:
            started.append(sink)

        def run(self) -> None:
            pass

    stale = tmp_path / "_manifests/topic=ev/partition=0000/.00000000000000000000.json.0badc0de.tmp"
    fresh = tmp_path / "_manifests/topic=ev/partition=0000/.00000000000000000300.json.89abcdef.tmp"
    for path in (stale, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    monkeypatch.setattr(consumers.runtime, "ConsumerLoop", NoLoop)
    for key, value in {"ARCHIVE_URI": str(tmp_path), "METRICS_PORT": "0", "ARCHIVER_DEDUP_WINDOW_S": "600",
                       "ARCHIVER_DEDUP_MAX_IDS": "1000"}.items():
        monkeypatch.setenv(key, value)
    assert main(["archiver"]) == 0
    assert not stale.exists() and fresh.exists()
    sink = started[0]
    assert isinstance(sink, ParquetSink)
    assert (sink.dedup.window_ms, sink.dedup.max_ids) == (600_000, 1000)

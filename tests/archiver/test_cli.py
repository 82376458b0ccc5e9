"""`evpipe archiver`: help text and configuration errors (no servers)."""

from __future__ import annotations

import pytest

from evpipe.cli import build_parser, main


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["archiver", "--help"])
    out = capsys.readouterr().out
    for name in ("ARCHIVE_URI", "ARCHIVER_GROUP", "CONSUMER_BATCH_MAX_BYTES", "CONSUMER_BUFFER_MAX_BYTES",
                 "CONSUMER_SESSION_TIMEOUT_MS", "METRICS_PORT", "S3_ENDPOINT_URL"):
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

"""JSON logs carry the request id; the request id round-trips; tracing is off unless configured."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from evpipe.observability.logs import RequestIdMiddleware, configure
from evpipe.observability.tracing import TracingMiddleware, instrument

log = logging.getLogger("evpipe.test.deploy")


async def _ok(request: Request) -> PlainTextResponse:
    log.warning("event rejected", extra={"event_id": "0193-abc", "source_id": "web"})
    return PlainTextResponse("ok")


async def _boom(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no", status_code=503)


def _app() -> Starlette:
    return Starlette(routes=[Route("/v1/events", _ok, methods=["POST"]), Route("/fail", _boom)])


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_request_and_event_ids(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    with TestClient(RequestIdMiddleware(_app())) as client:
        response = client.post("/v1/events", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    (line,) = [entry for entry in lines if entry["msg"] == "event rejected"]
    assert line["request_id"] == "req-42" and line["event_id"] == "0193-abc" and line["source_id"] == "web"
    assert line["level"] == "warning" and line["logger"] == "evpipe.test.deploy" and line["ts"].endswith("+00:00")


def test_request_id_is_generated_when_missing_or_unsafe() -> None:
    with TestClient(RequestIdMiddleware(_app())) as client:
        generated = client.post("/v1/events").headers["x-request-id"]
        replaced = client.post("/v1/events", headers={"X-Request-ID": "bad id\"<script>"}).headers["x-request-id"]
    assert len(generated) == 32 and generated != replaced and "<" not in replaced


def test_text_format_stays_available_and_bad_format_is_refused(restore_logging: None) -> None:
    configure("debug", "text")
    assert logging.getLogger().level == logging.DEBUG
    with pytest.raises(ValueError, match="EVPIPE_LOG_FORMAT"):
        configure("info", "xml")


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    app = _app()
    assert instrument(app) is app


def test_tracing_spans_continue_the_callers_trace() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = RequestIdMiddleware(TracingMiddleware(_app(), provider.get_tracer("test")))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with TestClient(app) as client:
        client.post("/v1/events", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
                                            "X-Request-ID": "req-7"})
        client.get("/fail")
    spans: dict[str, Any] = {span.name: span for span in exporter.get_finished_spans()}
    ingest = spans["POST /v1/events"]
    assert format(ingest.context.trace_id, "032x") == trace_id
    assert ingest.attributes["http.response.status_code"] == 200
    assert ingest.attributes["evpipe.request_id"] == "req-7"
    assert spans["GET /fail"].status.status_code == StatusCode.ERROR


def test_tracing_enabled_without_the_sdk_explains_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="evpipe\\[tracing\\]"):
            instrument(_app())
    else:
        assert isinstance(instrument(_app()), TracingMiddleware)


def test_bad_log_level_is_refused(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="log level"):
        configure("loud", "text")


def test_processes_log_json_when_asked() -> None:
    """The gateway's own start-up warning (the development key) comes out as one JSON object per line."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from evpipe.local.daemon import free_port

    env = os.environ | {"EVPIPE_LOG_FORMAT": "json", "GATEWAY_PORT": str(free_port()),
                        "GATEWAY_BACKEND": "redis", "GATEWAY_API_KEYS": "dev-key=dev"}
    proc = subprocess.Popen([sys.executable, "-m", "evpipe", "gateway"], env=env, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "development API key" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "gateway exited without logging"
    finally:
        proc.terminate()
        proc.wait(30)
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"].startswith("evpipe.gateway")
    assert "development API key" in record["msg"]


def test_the_gateway_process_returns_the_request_id() -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from evpipe.local.daemon import free_port, port_open

    port = free_port()
    env = os.environ | {"GATEWAY_PORT": str(port), "GATEWAY_BACKEND": "redis", "GATEWAY_API_KEYS": "k=src"}
    proc = subprocess.Popen([sys.executable, "-m", "evpipe", "gateway"], env=env, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        echoed = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "req-42"})
        made = httpx.post(f"{url}/v1/events", content=b"{}", headers={"X-Api-Key": "wrong"})
    finally:
        proc.terminate()
        proc.wait(30)
    assert echoed.headers["x-request-id"] == "req-42"
    assert made.status_code == 401 and len(made.headers["x-request-id"]) == 32


@pytest.mark.parametrize("command", [["gateway"], ["archiver"], ["loader"], ["worker"]])
def test_a_bad_log_format_exits_with_the_reason(command: list[str]) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "evpipe", *command], env=os.environ | {"EVPIPE_LOG_FORMAT": "xml"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "EVPIPE_LOG_FORMAT: Input should be 'text' or 'json'" in result.stderr
    assert "Traceback" not in result.stderr

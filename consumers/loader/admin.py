"""The loader's admin HTTP server: Prometheus ``/metrics``, ``/healthz``, and read-only ``/query``.

``/query`` exists for the embedded engine: chdb locks its data directory, so
while the loader runs, `evpipe query` cannot open it and asks the loader
instead (POST the SQL as the body; JSON ``{"columns": [...], "rows": [...]}``
back). Only reading statements are accepted (see ``query.check_read_only``),
only from loopback clients (it is meant for `evpipe query` on the same host),
and they share the loader's client under its lock (an insert and a query never
interleave on one chdb connection).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumers.loader.query import endpoint_file, run_local

log = logging.getLogger("evpipe.loader.admin")
MAX_SQL_BYTES = 1 << 20


class AdminServer:
    def __init__(
        self,
        host: str,
        port: int,
        client: Client | None = None,
        lock: threading.Lock | None = None,
        database: str = "",
        data_path: Path | None = None,
    ) -> None:
        """``client`` given: serve /query with it; ``data_path``: publish the endpoint next to it."""
        self.client = client
        self.lock = lock or threading.Lock()
        self.database = database
        self.data_path = data_path
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="loader-admin", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    def start(self) -> AdminServer:
        self.thread.start()
        if self.data_path is not None and self.client is not None:
            endpoint_file(self.data_path).write_text(self.url + "\n")
        log.info("admin server on %s (/metrics%s)", self.url, ", /query" if self.client else "")
        return self

    def stop(self) -> None:
        if self.data_path is not None:
            endpoint_file(self.data_path).unlink(missing_ok=True)
        self.httpd.shutdown()
        self.httpd.server_close()

    def query(self, sql: str, database: str | None) -> bytes:
        assert self.client is not None
        with self.lock:
            result = run_local(self.client, sql, database or self.database or None, readonly=True)
        return json.dumps(result.to_json(), default=str).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif url.path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif url.path == "/query":
                    params = parse_qs(url.query)
                    self._query(params.get("sql", [""])[0], params.get("database", [""])[0])
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /query\n", "text/plain")

            def do_POST(self) -> None:
                url = urlparse(self.path)
                if url.path != "/query":
                    self._send(404, b"POST only to /query\n", "text/plain")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_SQL_BYTES:
                    self._send(413, b"query text over 1 MiB\n", "text/plain")
                    return
                sql = self.rfile.read(length).decode(errors="replace")
                self._query(sql, parse_qs(url.query).get("database", [""])[0])

            def _query(self, sql: str, database: str) -> None:
                if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                    self._send(403, b"/query answers loopback clients only\n", "text/plain")
                elif admin.client is None:
                    self._send(404, b"/query is served only when the loader runs the embedded engine\n",
                               "text/plain")
                elif not sql.strip():
                    self._send(400, b"no SQL: POST it as the request body\n", "text/plain")
                else:
                    try:
                        self._send(200, admin.query(sql, database or None), "application/json")
                    except Exception as exc:  # noqa: BLE001 (any failure of the analyst's SQL is shown to them)
                        self._send(400, f"{exc}\n".encode(), "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug(fmt, *args)

        return Handler

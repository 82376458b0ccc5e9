"""The loader's admin HTTP server: Prometheus ``/metrics`` and ``/healthz``.

Analysts query ClickHouse itself (any ClickHouse client, or `evpipe query`),
never the loader.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger("evpipe.loader.admin")


class AdminServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.httpd = _Server((host, port), _Handler)
        self.httpd.registry = registry
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="loader-admin", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    def start(self) -> AdminServer:
        self.thread.start()
        log.info("admin server on %s (/metrics, /healthz)", self.url)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    registry: CollectorRegistry  # the process's registry, served on /metrics


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b"not found: try /metrics or /healthz (queries go to ClickHouse itself)\n",
                       "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug(fmt, *args)

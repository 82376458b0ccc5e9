"""Run the app under uvicorn with a drain phase on SIGTERM.

uvicorn alone stops accepting connections at once on SIGTERM. A load
balancer needs a moment to see /readyz fail, so the first SIGTERM (or
SIGINT) only starts draining: readiness fails and new ingest requests get
503 for GATEWAY_DRAIN_S, then uvicorn's graceful shutdown runs (in-flight
requests finish, then the lifespan flushes the producer). A second signal
shuts down at once.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn

from evpipe.gctune import tune_for_throughput
from evpipe.observability.logs import RequestIdMiddleware, configure_process
from evpipe.observability.tracing import instrument
from evpipe.settings import ConfigError
from gateway.app import Gateway, create_app
from gateway.auth import KeyConfigError
from gateway.http_limits import HeadLimitedProtocol
from gateway.settings import GatewaySettings

log = logging.getLogger("evpipe.gateway")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway, drain_s: float) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.drain_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.gateway.draining:
            super().handle_exit(sig, frame)
            return
        log.info("signal %d: draining for %.1fs before shutdown", sig, self.drain_s)
        self.gateway.begin_drain()
        timer = threading.Timer(self.drain_s, self._graceful_exit, (sig, frame))
        timer.daemon = True
        timer.start()

    def _graceful_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutting down; a completed drain exits 0 instead.
        self._captured_signals.clear()


def serve(settings: GatewaySettings) -> int:
    configure_process(settings.gateway_log_level, settings.evpipe_log_format)
    try:
        app = create_app(settings)
    except (KeyConfigError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    # Outermost: the request id (taken from X-Request-ID or made, logged, returned), then tracing when
    # OTEL_EXPORTER_OTLP_ENDPOINT is set (off by default: no cost).
    asgi = RequestIdMiddleware(instrument(app))
    # httptools with a deadline and size limits for the request head, which the app never sees.
    http = HeadLimitedProtocol.with_limits(settings.gateway_head_timeout_s, settings.gateway_max_header_bytes,
                                           settings.gateway_max_head_bytes)
    config = uvicorn.Config(
        asgi, host=settings.gateway_host, port=settings.gateway_port, loop="uvloop", http=http,
        # proxy_headers off: the client IP comes from GATEWAY_TRUSTED_PROXIES only (gateway.clientip).
        lifespan="on", access_log=False, proxy_headers=False, log_level=settings.gateway_log_level.lower(),
        timeout_graceful_shutdown=max(5, int(settings.gateway_deadline_s) + 5),
    )
    server = DrainingServer(config, app.state.gateway, settings.gateway_drain_s)
    tune_for_throughput(settings.gateway_gc_gen0_threshold)  # after start-up: what was built so far is frozen
    server.run()
    return 0

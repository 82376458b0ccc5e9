"""`evpipe gateway`: serve the ingestion API under uvicorn (one process; scale out behind a load balancer)."""

from __future__ import annotations

import argparse

from evpipe.settings import describe
from gateway.settings import GatewaySettings

DESCRIPTION = """\
Serve the HTTP ingestion API: POST /v1/events (native) and the Segment-compatible
/v1/batch, /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias.
A 2xx means every accepted event is durably in the backend (GATEWAY_BACKEND).
Probes: /healthz, /readyz; Prometheus: /metrics; API description: /openapi.json.
On SIGTERM readiness fails for GATEWAY_DRAIN_S, in-flight requests finish, the producer is flushed."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gateway", help="serve the HTTP ingestion API (Kafka, Redis or Postgres backend)",
        description=DESCRIPTION, epilog=describe(GatewaySettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="interface to listen on (default: GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: GATEWAY_PORT)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evpipe.settings import load
    from gateway.server import serve

    settings = load(GatewaySettings)
    updates = {k: v for k, v in (("gateway_host", args.host), ("gateway_port", args.port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    return serve(settings)

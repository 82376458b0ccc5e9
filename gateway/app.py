"""The Starlette application: routes, auth, limits, and the durability contract's HTTP side.

A 2xx is sent only after the backend acknowledged every event of the request
(``Backend.send`` returned). Anything that keeps an event out is answered
with a 4xx naming the reason, or 503 + Retry-After when the client should resend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import ingest
from gateway.auth import Identity, KeyStore, key_from_headers, load_keys
from gateway.backends import create_backend
from gateway.backends.base import Backend, Unavailable
from gateway.body import BodyError, Limits, MemoryBudget, ParsedBody, parse_events, read_body
from gateway.clientip import ClientIp, parse_networks
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics, reason_class
from gateway.openapi import openapi_document
from gateway.ratelimit import RateLimiter
from gateway.segment import CALLS, SHORT_PATHS
from gateway.settings import DEV_API_KEYS, GatewaySettings
from schemas.envelope import Enrichment, EventValidator, format_timestamp

log = logging.getLogger("evpipe.gateway")


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers, media_type="application/json")


def _error(status: int, message: str, **extra: Any) -> Response:
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return json_response({"error": message, **extra}, status, headers)


@dataclass(frozen=True)
class Incoming:
    """What the ingest path needs from an HTTP request, whichever way it arrived."""

    headers: dict[str, str]
    stream: AsyncIterator[bytes]
    peer: str | None


def _header_dict(scope: Scope) -> dict[str, str]:
    # One plain dict per request: Starlette's Headers scans the raw list on every lookup.
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


class Gateway:
    def __init__(self, settings: GatewaySettings, backend: Backend | None = None) -> None:
        self.settings = settings
        # Configuration first: a bad key list or proxy fails before any backend connection is opened.
        self.keys = KeyStore(load_keys(settings.gateway_api_keys, settings.gateway_api_keys_file))
        self.client_ip = ClientIp(parse_networks(settings.gateway_trusted_proxies))
        self.limiter = RateLimiter(settings.gateway_rate_limit_events_per_s, settings.gateway_rate_limit_burst)
        self.backend = backend or create_backend(settings)
        self.validator = EventValidator(max_event_bytes=settings.gateway_max_event_bytes)
        self.limits = Limits(settings.gateway_max_body_bytes, settings.gateway_max_decompressed_bytes,
                             settings.gateway_max_event_bytes, settings.gateway_max_batch_events)
        self.budget = MemoryBudget(settings.gateway_max_inflight_bytes)
        self.metrics = GatewayMetrics(lambda: float(self.backend.queued()))
        self.draining = False
        self.started = False
        self._unavailable_logged, self._unavailable_count = 0.0, 0
        self.openapi = orjson.dumps(openapi_document(settings))

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.gateway_api_keys == DEV_API_KEYS and self.settings.gateway_api_keys_file is None:
            log.warning("using the development API key 'dev-key' (source 'dev'): set GATEWAY_API_KEYS or "
                        "GATEWAY_API_KEYS_FILE before exposing this gateway")
        await self.backend.start()
        self.started = True

    async def close(self) -> None:
        self.draining = True
        await self.backend.close()

    def begin_drain(self) -> None:
        """SIGTERM: readiness fails and new ingest requests get 503 while in-flight ones finish."""
        self.draining = True

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.close()

    # -- probes ------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            reason: str | None = "shutting down"
        elif not self.started:
            reason = "starting"
        else:
            reason = await self.backend.ready()
        status = 503 if reason else 200
        self.metrics.requests.labels("/readyz", str(status)).inc()
        return json_response({"status": "not ready", "reason": reason} if reason else {"status": "ready"}, status)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def openapi_endpoint(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    # -- ingestion ---------------------------------------------------------------------------------

    def ingest_route(self, route: str, segment_call: str | None) -> Any:
        """The Starlette endpoint of an ingest route (browser requests and CORS go through Starlette)."""

        async def endpoint(request: Request) -> Response:
            incoming = Incoming(_header_dict(request.scope), request.stream(),
                                request.client.host if request.client else None)
            return await self.handle(route, segment_call, incoming)

        return endpoint

    async def handle(self, route: str, segment_call: str | None, incoming: Incoming) -> Response:
        return await self._count(route, self._ingest(incoming, segment_call))

    async def _count(self, route: str, handler: Any) -> Response:
        try:
            response: Response = await handler
        except BodyError as exc:
            extra = {"retry_after": exc.retry_after} if exc.retry_after else {}
            response = _error(exc.status, exc.message, **extra)
        except ClientDisconnect:
            # The client left before sending its whole body: nothing was accepted, nobody reads the answer.
            response = _error(400, "client disconnected before the body was complete")
        self.metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    async def _ingest(self, incoming: Incoming, segment_call: str | None) -> Response:
        if self.draining:
            return _error(503, "gateway is shutting down: resend to another instance", retry_after=1)
        headers = incoming.headers
        header_key = key_from_headers(headers)
        identity = self.keys.lookup(header_key)
        if header_key and identity is None:
            return _error(401, "unknown API key")
        held = [0]
        try:
            return await self._read_and_send(incoming, identity, segment_call, held)
        finally:
            self.budget.release(held[0])

    async def _read_and_send(self, incoming: Incoming, identity: Identity | None, segment_call: str | None,
                             held: list[int]) -> Response:
        headers = incoming.headers
        body = await read_body(incoming.stream, headers.get("content-length"),
                               headers.get("content-encoding"), self.limits, held, self.budget)
        parsed = self._parse(body, headers.get("content-type"), segment_call)
        if identity is None:
            identity = self.keys.lookup(ingest.body_write_key(parsed, segment_call is not None))
            if identity is None:
                return _error(401, "missing or unknown API key: send Authorization: Bearer <key>, X-Api-Key, "
                                   "HTTP Basic with the write key as user name, or write_key in the body")
        if segment_call is None and (problem := ingest.check_native_envelope(parsed)):
            return _error(400, problem)
        wait = self.limiter.take(identity.key_id, len(parsed.events))
        if wait:
            self.metrics.rejected.labels("rate limited").inc(len(parsed.events))
            return _error(429, f"rate limit of {self.limiter.rate:g} events/s for this key exceeded",
                          retry_after=int(wait))
        return await self._validate_and_send(incoming, parsed, identity.source_id, segment_call)

    def _parse(self, body: bytes, content_type: str | None, segment_call: str | None) -> ParsedBody:
        batch_key = "batch" if segment_call in (None, "batch") else "\x00no-batch"
        parsed = parse_events(body, content_type, self.limits, batch_key)
        if segment_call not in (None, "batch") and not parsed.single:
            raise BodyError(400, f"/v1/{segment_call} takes one message object; send arrays to /v1/batch")
        if segment_call == "batch" and parsed.single:
            raise BodyError(400, "/v1/batch takes {\"batch\": [...]}")
        return parsed

    async def _validate_and_send(self, incoming: Incoming, parsed: ParsedBody, source: str,
                                 segment_call: str | None) -> Response:
        received = dt.datetime.now(dt.UTC)
        enrichment = Enrichment(
            source_id=source, received_at=format_timestamp(received),
            ip=self.client_ip.resolve(incoming.peer, incoming.headers.get("x-forwarded-for")),
            user_agent=incoming.headers.get("user-agent"),
        )
        call = None if segment_call in (None, "batch") else segment_call
        mapper = ingest.segment_mapper(call, parsed, source, received) if segment_call else None
        outcome = ingest.build(parsed, self.validator, enrichment, mapper)
        if outcome.rejected:
            for item in outcome.rejected:
                self.metrics.rejected.labels(reason_class(item.reason)).inc()
            if parsed.single and outcome.rejected[0].reason.endswith("-byte limit"):
                return _error(413, f"{outcome.rejected[0].reason} (GATEWAY_MAX_EVENT_BYTES)")
        count = len(parsed.events)
        self.metrics.inflight.inc(count)
        started = time.perf_counter()
        try:
            await self.backend.send(outcome.records, outcome.rejected, self.settings.gateway_deadline_s)
        except Unavailable as exc:
            return self._unavailable(exc, outcome)
        finally:
            self.metrics.inflight.dec(count)
        self.metrics.backend_latency.observe(time.perf_counter() - started)
        self.metrics.accepted.inc(len(outcome.records))
        document = outcome.response()
        if segment_call:
            document["success"] = bool(outcome.records)
        return json_response(document, 200 if outcome.records else 400)

    def _unavailable(self, exc: Unavailable, outcome: ingest.Outcome) -> Response:
        extra: dict[str, Any] = {"retry_after": exc.retry_after}
        if exc.enqueued:
            # The backend may still store these: a resend must carry the same ids so sinks deduplicate.
            extra["event_ids"] = [r.event["event_id"] for r in outcome.records]
            extra["resend"] = "resend the same events with these event_id values"
        self._log_unavailable(exc.reason)
        return _error(503, f"backend unavailable: {exc.reason}", **extra)


    def _log_unavailable(self, reason: str) -> None:
        # An outage answers thousands of 503s a second: log once a second with a count, not each one.
        self._unavailable_count += 1
        now = time.monotonic()
        if now - self._unavailable_logged >= 1.0:
            log.warning("backend unavailable (%d requests answered 503 since the last report): %s",
                        self._unavailable_count, reason)
            self._unavailable_logged, self._unavailable_count = now, 0


INGEST_ROUTES: dict[str, str | None] = {
    "/v1/events": None, "/v1/batch": "batch", **{f"/v1/{call}": call for call in CALLS},
    **{f"/v1/{short}": call for short, call in SHORT_PATHS.items()},
}


class GatewayApp:
    """The ASGI app: server-to-server ingest requests take a direct path, everything else goes through Starlette.

    Ingest POSTs without an ``Origin`` header (SDKs, servers) skip Starlette's
    router, middleware stack and Request object: on the single-event path that
    per-request overhead is a large part of the work. Browser requests (CORS),
    probes, /metrics and /openapi.json are served by the Starlette app.
    """

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self.routes = starlette.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in INGEST_ROUTES:
            headers = _header_dict(scope)
            if "origin" not in headers:
                await self._direct(scope, headers, receive, send)
                return
        await self.starlette(scope, receive, send)

    async def _direct(self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send) -> None:
        path = scope["path"]
        client = scope.get("client")
        incoming = Incoming(headers, _body_stream(receive), client[0] if client else None)
        try:
            response = await self.gateway.handle(path, INGEST_ROUTES[path], incoming)
        except Exception:
            log.exception("unexpected error on %s", path)
            self.gateway.metrics.requests.labels(path, "500").inc()
            response = _error(500, "internal error")
        await response(scope, receive, send)


async def _body_stream(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


def create_app(settings: GatewaySettings, backend: Backend | None = None) -> GatewayApp:
    gateway = Gateway(settings, backend)
    routes = [
        *[Route(path, gateway.ingest_route(path, call), methods=["POST"]) for path, call in INGEST_ROUTES.items()],
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", gateway.openapi_endpoint, methods=["GET"]),
    ]
    middleware = []
    origins = [o.strip() for o in settings.gateway_cors_origins.split(",") if o.strip()]
    if origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "X-Api-Key"],
            expose_headers=["Retry-After"], max_age=600,
        ))
    app = Starlette(routes=routes, middleware=middleware, lifespan=gateway.lifespan)
    app.state.gateway = gateway
    return GatewayApp(gateway, app)

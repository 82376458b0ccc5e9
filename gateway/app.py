"""The Starlette application: routes, auth, limits, and the durability contract's HTTP side.

A 2xx is sent only after the backend acknowledged every event of the request
(``Backend.send`` returned). Anything that keeps an event out is answered
with a 4xx naming the reason, or 503 + Retry-After when the client should resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.auth import KeyStore, load_keys
from gateway.backends import create_backend
from gateway.backends.base import Backend
from gateway.budget import MemoryBudget
from gateway.clientip import ClientIp, parse_networks
from gateway.errors import BodyError
from gateway.fallback.service import Fallback
from gateway.intake import Incoming, Intake, error_response, json_response
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics, OverflowCollector
from gateway.openapi import openapi_document
from gateway.overflow import HotKeys
from gateway.privacy import GatewayPrivacy
from gateway.segment import CALLS, SHORT_PATHS
from gateway.settings import DEV_API_KEYS, GatewaySettings
from gateway.tracking import TrackingPlans

log = logging.getLogger("evpipe.gateway")


def _header_dict(scope: Scope) -> dict[str, str]:
    # One plain dict per request: Starlette's Headers scans the raw list on every lookup.
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


class Gateway:
    def __init__(self, settings: GatewaySettings, backend: Backend | None = None) -> None:
        self.settings = settings
        # Configuration first: a bad key list or proxy fails before any backend connection is opened.
        keys = KeyStore(load_keys(settings.gateway_api_keys, settings.gateway_api_keys_file))
        client_ip = ClientIp(parse_networks(settings.gateway_trusted_proxies))
        self.privacy = GatewayPrivacy.create(settings)  # admin keys checked; no connection opened here
        self.hot_keys = HotKeys.of(settings)
        self.backend = backend or create_backend(settings, self.hot_keys)
        self.metrics = GatewayMetrics(lambda: float(self.backend.queued()),
                                      overflow=OverflowCollector(self.hot_keys, settings.gateway_overflow_top_keys))
        self.fallback = Fallback.create(settings, self.backend, self.metrics.fallback)
        if (cache := self.privacy.cache) is not None:
            self.metrics.suppression_age.set_function(lambda: cache.age_s)
        self.plans = TrackingPlans(settings.gateway_tracking_plans, settings.gateway_tracking_plans_reload_s,
                                   self.metrics.plans,  # a bad plan at start is a configuration error
                                   settings.s3_endpoint_url)
        self.intake = Intake(settings, keys, client_ip, self.backend, self.metrics, self.fallback,
                             self.privacy.cache, self.plans)
        self.draining = False
        self.started = False
        self._flusher: asyncio.Task[None] | None = None
        self._fallback_task: asyncio.Task[None] | None = None
        self._privacy_task: asyncio.Task[None] | None = None
        self._plans_task: asyncio.Task[None] | None = None
        self.openapi = orjson.dumps(openapi_document(settings))

    @property
    def budget(self) -> MemoryBudget:
        return self.intake.budget

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.gateway_api_keys == DEV_API_KEYS and self.settings.gateway_api_keys_file is None:
            log.warning("using the development API key 'dev-key' (source 'dev'): set GATEWAY_API_KEYS or "
                        "GATEWAY_API_KEYS_FILE before exposing this gateway")
        await self.backend.start()
        self._flusher = asyncio.create_task(self._flush_failures(), name="auth-failure-log")
        if self.fallback is not None:
            log.info("fallback store for broker outages: %s", self.fallback.store.uri)
            self._fallback_task = asyncio.create_task(self.fallback.run(), name="fallback")
        self._privacy_task = asyncio.create_task(self.privacy.refresh_forever(), name="suppression-list")
        if self.plans.source is not None:
            self._plans_task = asyncio.create_task(self.plans.run(), name="tracking-plans")
        self.started = True

    async def close(self) -> None:
        self.draining = True
        for task in (self._flusher, self._fallback_task, self._privacy_task, self._plans_task):
            if task is not None:
                task.cancel()
        if self.fallback is not None:
            self.fallback.close()
        self.intake.failures.flush()
        await self.backend.close()

    async def _flush_failures(self) -> None:
        # Refusals are logged a minute at a time; this writes the last minute out when no new one comes.
        failures = self.intake.failures
        while True:
            await asyncio.sleep(failures.window_s)
            if failures.pending():
                failures.flush()

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
            if reason and self.fallback is not None and await self.fallback.ready() is None:
                # Kafka is not ready but every request is still answered 2xx from the fallback store:
                # taking this gateway out of the load balancer would turn that into refused connections.
                self.metrics.requests.labels("/readyz", "200").inc()
                return json_response({"status": "ready", "fallback": reason})
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
            response = error_response(exc.status, exc.message, exc.retry_after, exc.close)
        except ClientDisconnect:
            # The client left before sending its whole body: nothing was accepted, nobody reads the answer.
            response = error_response(400, "client disconnected before the body was complete")
        self.metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    async def _ingest(self, incoming: Incoming, segment_call: str | None) -> Response:
        if self.draining:
            return error_response(503, "gateway is shutting down: resend to another instance", retry_after=1)
        return await self.intake.ingest(incoming, segment_call)


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
            response = error_response(500, "internal error")
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
        Route("/admin/privacy/requests", gateway.privacy.create_request, methods=["POST"]),
        Route("/admin/privacy/requests", gateway.privacy.list_requests, methods=["GET"]),
        Route("/admin/privacy/requests/{request_id}", gateway.privacy.get_request, methods=["GET"]),
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

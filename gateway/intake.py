"""One ingest request, from its headers to its answer.

The order is what keeps strangers from holding resources: the key in the
headers is checked before a byte of the body is read; a request with no key
there (a browser with ``writeKey`` in the body) is read under a small budget of
its own until its key is checked; every key has a share of the memory budget.
Every refusal of an authenticated source's request for what it sent is kept in
the invalid store with the reason; refusals of unauthenticated requests are
counted and logged in aggregate, never stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from evpipe.plans.check import Verdict
from evpipe.privacy.cache import SuppressionCache
from gateway import ingest
from gateway.auth import Identity, KeyStore, key_from_headers
from gateway.backends.base import WHOLE_BODY, Backend, RawBytes, Record, Rejected, Unavailable
from gateway.body import Capture, Limits, ParsedBody, check_encoding, parse_events, read_body
from gateway.budget import Hold, KeyBudgets, MemoryBudget
from gateway.clientip import ClientIp
from gateway.errors import BodyError
from gateway.failures import FailureLog
from gateway.fallback.service import Fallback
from gateway.fallback.store import StoreUnavailable
from gateway.ingest import Outcome
from gateway.metrics import GatewayMetrics, reason_class
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from gateway.tracking import TrackingPlans
from schemas.envelope import Enrichment, EventValidator, format_timestamp

log = logging.getLogger("evpipe.gateway")

# A refused body is sampled up to the kept size, but never waited for longer than this.
_SAMPLE_TIMEOUT_S = 2.0


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers, media_type="application/json")


def error_response(status: int, message: str, retry_after: int | None = None, close: bool = False,
                   **extra: Any) -> Response:
    headers: dict[str, str] = {}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if close:
        headers["Connection"] = "close"
    return json_response({"error": message, **extra}, status, headers or None)


@dataclass(frozen=True)
class Incoming:
    """What the ingest path needs from an HTTP request, whichever way it arrived."""

    headers: dict[str, str]
    stream: AsyncIterator[bytes]
    peer: str | None


@dataclass
class _Request:
    incoming: Incoming
    identity: Identity | None
    received: dt.datetime
    capture: Capture = field(default_factory=Capture)


class Intake:
    def __init__(self, settings: GatewaySettings, keys: KeyStore, client_ip: ClientIp, backend: Backend,
                 metrics: GatewayMetrics, fallback: Fallback | None = None,
                 suppressions: SuppressionCache | None = None, plans: TrackingPlans | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.client_ip = client_ip
        self.backend = backend
        self.metrics = metrics
        self.fallback = fallback
        self.suppressions = suppressions
        self.plans = plans
        self.limiter = RateLimiter(settings.gateway_rate_limit_events_per_s, settings.gateway_rate_limit_burst)
        self.validator = EventValidator(max_event_bytes=settings.gateway_max_event_bytes)
        self.limits = Limits(settings.gateway_max_body_bytes, settings.gateway_max_decompressed_bytes,
                             settings.gateway_max_event_bytes, settings.gateway_max_batch_events)
        unauth_cap = settings.gateway_unauth_max_body_bytes
        self.unauth_limits = Limits(
            min(unauth_cap, settings.gateway_max_body_bytes), min(unauth_cap, settings.gateway_max_decompressed_bytes),
            settings.gateway_max_event_bytes, settings.gateway_max_batch_events,
            body_setting="GATEWAY_UNAUTH_MAX_BODY_BYTES", inflated_setting="GATEWAY_UNAUTH_MAX_BODY_BYTES")
        self.budget = MemoryBudget(settings.gateway_max_inflight_bytes, "GATEWAY_MAX_INFLIGHT_BYTES")
        self.unauth_budget = MemoryBudget(settings.gateway_unauth_max_inflight_bytes,
                                          "GATEWAY_UNAUTH_MAX_INFLIGHT_BYTES", holder="requests without a header key")
        self.key_budgets = KeyBudgets(settings.gateway_max_inflight_bytes_per_key)
        self.failures = FailureLog()
        self._unavailable_logged, self._unavailable_count = 0.0, 0

    async def ingest(self, incoming: Incoming, segment_call: str | None) -> Response:
        header_key = key_from_headers(incoming.headers)
        identity = self.keys.lookup(header_key)
        if header_key and identity is None:
            return self._refuse_stranger(incoming, 401, "unknown API key")
        request = _Request(incoming, identity, dt.datetime.now(dt.UTC))
        key_budget = self.key_budgets.for_key(identity.key_id) if identity else None
        hold = Hold((self.budget, key_budget) if key_budget else (self.budget, self.unauth_budget))
        try:
            return await self._read_and_send(request, segment_call, hold)
        except BodyError as exc:
            return await self._refuse(request, exc)
        finally:
            hold.release()
            if identity and key_budget:
                self.key_budgets.forget_idle(key_budget, identity.key_id)

    async def _read_and_send(self, request: _Request, segment_call: str | None, hold: Hold) -> Response:
        headers = request.incoming.headers
        encoding = check_encoding(headers.get("content-encoding"))
        limits = self.limits if request.identity else self.unauth_limits
        body = await read_body(request.incoming.stream, headers.get("content-length"), encoding, limits, hold,
                               request.capture, self.settings.gateway_body_timeout_s)
        parsed = self._parse(body, headers.get("content-type"), segment_call)
        if request.identity is None:
            request.identity = self.keys.lookup(ingest.body_write_key(parsed, segment_call is not None))
            if request.identity is None:
                return self._refuse_stranger(
                    request.incoming, 401, "missing or unknown API key: send Authorization: Bearer <key>, "
                    "X-Api-Key, HTTP Basic with the write key as user name, or write_key in the body")
        if segment_call is None and (problem := ingest.check_native_envelope(parsed)):
            raise BodyError(400, problem)
        wait = self.limiter.take(request.identity.key_id, len(parsed.events))
        if wait:
            self.metrics.rejected.labels("rate limited").inc(len(parsed.events))
            return error_response(429, f"rate limit of {self.limiter.rate:g} events/s for this key exceeded",
                                  retry_after=int(wait))
        return await self._validate_and_send(request, parsed, request.identity.source_id, segment_call)

    def _parse(self, body: bytes, content_type: str | None, segment_call: str | None) -> ParsedBody:
        batch_key = "batch" if segment_call in (None, "batch") else "\x00no-batch"
        parsed = parse_events(body, content_type, self.limits, batch_key)
        if segment_call not in (None, "batch") and not parsed.single:
            raise BodyError(400, f"/v1/{segment_call} takes one message object; send arrays to /v1/batch")
        if segment_call == "batch" and parsed.single:
            raise BodyError(400, "/v1/batch takes {\"batch\": [...]}")
        return parsed

    async def _validate_and_send(self, request: _Request, parsed: ParsedBody, source: str,
                                 segment_call: str | None) -> Response:
        headers = request.incoming.headers
        enrichment = Enrichment(
            source_id=source, received_at=format_timestamp(request.received),
            ip=self.client_ip.resolve(request.incoming.peer, headers.get("x-forwarded-for")),
            user_agent=headers.get("user-agent"),
        )
        call = None if segment_call in (None, "batch") else segment_call
        mapper = ingest.segment_mapper(call, parsed, source, request.received) if segment_call else None
        plan = self.plans.for_source(source) if self.plans is not None else None
        outcome = ingest.build(parsed, self.validator, enrichment, mapper, plan, self._count_violations)
        for item in outcome.rejected:
            self.metrics.rejected.labels(reason_class(item.reason)).inc()
        if outcome.rejected and parsed.single and outcome.rejected[0].reason.endswith("-byte limit"):
            await self._keep(outcome.rejected)
            return error_response(413, f"{outcome.rejected[0].reason} (GATEWAY_MAX_EVENT_BYTES)")
        suppressed = self._suppress(outcome)
        count = len(parsed.events)
        self.metrics.inflight.inc(count)
        started = time.perf_counter()
        try:
            await self.backend.send(outcome.records, outcome.rejected, self.settings.gateway_deadline_s)
            self.metrics.backend_latency.observe(time.perf_counter() - started)
        except Unavailable as exc:
            if not await self._fall_back(exc, outcome.records, outcome.rejected):
                return self._unavailable(exc, outcome)
        finally:
            self.metrics.inflight.dec(count)
        self.metrics.accepted.inc(len(outcome.records))
        document = outcome.response()
        document["accepted"] += suppressed  # answered like any accepted event: the client learns nothing
        if segment_call:
            document["success"] = bool(outcome.records) or suppressed > 0
        return json_response(document, 200 if outcome.records or suppressed else 400)

    def _count_violations(self, verdict: Verdict) -> None:
        self.metrics.plans.count(verdict.plan.source, verdict.event_type, [v.pointer for v in verdict.violations])

    def _suppress(self, outcome: Outcome) -> int:
        """Drop the events of suppressed users (privacy): counted, never produced; returns how many."""
        if self.suppressions is None:
            return 0
        suppressions = self.suppressions.snapshot()
        if suppressions.empty:
            return 0
        matches = suppressions.matches
        kept = [r for r in outcome.records
                if not matches(r.event.get("source_id"), r.event.get("user_id"), r.event.get("anonymous_id"))]
        dropped = len(outcome.records) - len(kept)
        if dropped:
            outcome.records = kept
            self.metrics.suppressed.inc(dropped)
        return dropped

    # -- refusals --------------------------------------------------------------------------------------

    async def _refuse(self, request: _Request, exc: BodyError) -> Response:
        close = exc.close or not request.capture.complete  # unread body bytes: the connection is not reusable
        if request.identity is None:
            return self._refuse_stranger(request.incoming, exc.status, exc.message, exc.retry_after, close)
        if exc.keeps_body:
            await self._keep_body(request, exc.message)
        return error_response(exc.status, exc.message, exc.retry_after, close)

    def _refuse_stranger(self, incoming: Incoming, status: int, message: str, retry_after: int | None = None,
                         close: bool = False) -> Response:
        """Unauthenticated: counted and logged in aggregate, never stored."""
        kind = f"{status} {reason_class(message)}"
        self.metrics.unauthenticated.labels(str(status)).inc()
        self.failures.record(f"refused without a valid key: {kind}", incoming.peer)
        return error_response(status, message, retry_after, close)

    async def _keep_body(self, request: _Request, reason: str) -> None:
        assert request.identity is not None
        limit = self.settings.gateway_max_kept_body_bytes
        await self._sample(request, limit)
        headers = request.incoming.headers
        raw = RawBytes.of(request.capture.chunks, limit, request.capture.complete,
                          headers.get("content-type"), headers.get("content-encoding"))
        self.metrics.rejected.labels(reason_class(reason)).inc()
        await self._keep([Rejected(WHOLE_BODY, reason, None, request.identity.source_id,
                                   format_timestamp(request.received), raw)])

    async def _sample(self, request: _Request, limit: int) -> None:
        """Read a refused body on up to the kept size (a 415 or a declared-too-large body was not read)."""
        capture = request.capture
        if capture.complete or capture.size >= limit:
            return
        try:
            async with asyncio.timeout(_SAMPLE_TIMEOUT_S):
                async for chunk in request.incoming.stream:
                    capture.chunks.append(chunk)
                    if capture.size >= limit:
                        return
            capture.complete = True
        except (TimeoutError, ClientDisconnect):  # slow or gone: keep what arrived
            return

    async def _fall_back(self, exc: Unavailable, records: list[Record], rejected: list[Rejected]) -> bool:
        """Kafka did not take the events: True once they are durably in the fallback store.

        All of the request's events are stored, also any Kafka acknowledged before the deadline or
        delivers later: the sinks deduplicate on event_id. False (a 503) whenever the store did not take
        them, so no 2xx is ever answered for an event that is neither in Kafka nor stored."""
        if self.fallback is None:
            return False
        try:
            await self.fallback.keep(records, rejected)
        except StoreUnavailable as failure:
            exc.reason = f"{exc.reason}; fallback store: {failure}"
            return False
        return True

    async def _keep(self, rejected: list[Rejected]) -> None:
        try:
            await self.backend.send([], rejected, self.settings.gateway_deadline_s)
        except Unavailable as exc:
            if await self._fall_back(exc, [], rejected):
                return
            # The client gets its 4xx either way; the loss of the kept copy is counted and logged.
            self.metrics.invalid_store_failures.inc(len(rejected))
            log.warning("could not keep %d rejected request(s) in the invalid store: %s", len(rejected), exc.reason)

    def _unavailable(self, exc: Unavailable, outcome: Outcome) -> Response:
        extra: dict[str, Any] = {}
        if exc.enqueued:
            # The backend may still store these: a resend must carry the same ids so sinks deduplicate.
            extra["event_ids"] = [r.event["event_id"] for r in outcome.records]
            extra["resend"] = "resend the same events with these event_id values"
        self._log_unavailable(exc.reason)
        return error_response(503, f"backend unavailable: {exc.reason}", exc.retry_after, **extra)

    def _log_unavailable(self, reason: str) -> None:
        # An outage answers thousands of 503s a second: log once a second with a count, not each one.
        self._unavailable_count += 1
        now = time.monotonic()
        if now - self._unavailable_logged >= 1.0:
            log.warning("backend unavailable (%d requests answered 503 since the last report): %s",
                        self._unavailable_count, reason)
            self._unavailable_logged, self._unavailable_count = now, 0

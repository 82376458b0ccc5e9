"""Prometheus metrics of one gateway app (own registry, so several apps can live in one test process)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway.overflow import HotKeys

__all__ = ["CONTENT_TYPE_LATEST", "FallbackMetrics", "GatewayMetrics", "OverflowCollector", "PlanMetrics"]


class FallbackMetrics:
    """The durable fallback (gateway.fallback): on the gateway's registry, or on `evpipe fallback drain`'s own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.stored = Counter("evpipe_gateway_fallback_events_stored", "Events written durably to the fallback "
                              "store because Kafka did not take them in time (each was answered 2xx).", registry=r)
        self.drained = Counter("evpipe_gateway_fallback_events_drained", "Stored events re-produced to Kafka and "
                               "acknowledged (their object then deleted).", registry=r)
        self.write_failures = Counter("evpipe_gateway_fallback_write_failures", "Writes the fallback store did not "
                                      "take (their requests were answered 503).", registry=r)
        self.pending = Gauge("evpipe_gateway_fallback_events_pending", "Events in the fallback store waiting to "
                             "be drained, as of the last listing.", registry=r)
        self.oldest_age = Gauge("evpipe_gateway_fallback_oldest_pending_age_seconds", "Age of the oldest pending "
                                "object in the fallback store (0 when it is empty), as of the last listing.",
                                registry=r)


class PlanMetrics:
    """Tracking plans (gateway.tracking): what events break, and whether the plans in force are the files'."""

    # Paths name client-chosen properties (an unexpected one is reported by its name): past this many
    # label sets, new ones are counted under "(other)" so a client cannot grow the series without bound.
    MAX_SERIES = 1000

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.violations = Counter(
            "evpipe_gateway_plan_violations", "Tracking-plan violations by source, event type ('(unplanned)' for "
            "a type the plan does not name) and JSON pointer (array indices as N; '(other)' past 1000 series).",
            ["source", "type", "path"], registry=r)
        self.reloads = Counter("evpipe_gateway_plan_reloads", "Plan directory changes loaded and put in force.",
                               registry=r)
        self.reload_failures = Counter(
            "evpipe_gateway_plan_reload_failures", "Plan directory changes refused (a file did not load): the "
            "plans in force before stay.", registry=r)
        self.version = Gauge("evpipe_gateway_plan_version", "Version of each source's plan in force.",
                             ["source"], registry=r)
        self.refused = Gauge(
            "evpipe_gateway_plan_files_refused", "1 while the plan directory holds a set this gateway refused "
            "(the plans in force are older than the files), else 0.", registry=r)
        self._series: set[tuple[str, str, str]] = set()

    def count(self, source: str, event_type: str, pointers: list[str]) -> None:
        for pointer in pointers:
            labels = (source, event_type, re.sub(r"/\d+(?=/|$)", "/N", pointer))
            if labels not in self._series:
                if len(self._series) >= self.MAX_SERIES:
                    labels = (source, event_type, "(other)")
                else:
                    self._series.add(labels)
            self.violations.labels(*labels).inc()


class OverflowCollector(Collector):
    """The overflow lane, read from its buckets at each scrape: the hot-key set changes by the second,
    so the top-N gauge is built anew each time instead of leaving stale label sets behind."""

    def __init__(self, hot_keys: HotKeys, top: int) -> None:
        self.hot_keys = hot_keys
        self.top = top

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily("evpipe_gateway_overflow_events", "Events over their key's rate, sent to "
                                     "the overflow topic, by source.", labels=["source"])
        for source, count in sorted(self.hot_keys.by_source.items()):
            events.add_metric([source], count)
        yield events
        keys = GaugeMetricFamily("evpipe_gateway_overflow_hot_keys", "The keys (source_id:user_id) overflowing "
                                 "most now: events overflowed in the last 10-20 s (top GATEWAY_OVERFLOW_TOP_KEYS).",
                                 labels=["key"])
        for key, count in self.hot_keys.top(self.top):
            keys.add_metric([key], count)
        yield keys
        yield GaugeMetricFamily("evpipe_gateway_overflow_keys_tracked", "Keys with a token bucket (bounded).",
                                value=self.hot_keys.tracked())


class GatewayMetrics:
    def __init__(self, queued: Callable[[], float], registry: CollectorRegistry | None = None,
                 overflow: OverflowCollector | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("evpipe_gateway_requests", "HTTP requests by route and status.",
                                ["route", "status"], registry=r)
        self.accepted = Counter("evpipe_gateway_events_accepted", "Events durably handed to the backend.",
                                registry=r)
        self.suppressed = Counter("evpipe_gateway_events_suppressed", "Events of users on the privacy "
                                  "suppression list: answered 2xx, never handed to the backend.", registry=r)
        self.suppression_age = Gauge(
            "evpipe_privacy_suppression_list_age_seconds", "Seconds since this gateway last read the privacy "
            "suppression list (normally below PRIVACY_REFRESH_S; 0 when PRIVACY_STORE=off).", registry=r)
        self.rejected = Counter("evpipe_gateway_events_rejected", "Events refused, by reason class.",
                                ["reason"], registry=r)
        self.backend_latency = Histogram(
            "evpipe_gateway_backend_latency_seconds", "Time from handing a request's events to the backend "
            "until it acknowledged all of them.", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.unauthenticated = Counter(
            "evpipe_gateway_unauthenticated_refusals", "Requests refused before a valid key was known (never "
            "stored; logged per minute in aggregate), by status.", ["status"], registry=r)
        self.invalid_store_failures = Counter(
            "evpipe_gateway_invalid_store_failures", "Rejections that could not be kept in the invalid store "
            "(the client still got its 4xx).", registry=r)
        self.inflight = Gauge("evpipe_gateway_inflight_events", "Events in requests being processed.", registry=r)
        self.queued = Gauge("evpipe_gateway_queued_events", "Events handed to the backend client and not yet "
                            "acknowledged (the producer queue on Kafka).", registry=r)
        self.queued.set_function(queued)
        self.fallback = FallbackMetrics(r)
        self.plans = PlanMetrics(r)
        if overflow is not None:
            r.register(overflow)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def reason_class(reason: str) -> str:
    """A bounded label for a rejection reason: the field name or the first words, never user text."""
    head = reason.split(":", 1)[0] if ":" in reason else reason
    head = re.sub(r"\d+", "N", head.split("'", 1)[0]).strip()
    return head[:60] or "invalid"

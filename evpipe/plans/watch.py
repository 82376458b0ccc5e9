"""A consumer's tracking plans, polled in a thread: the same all-or-nothing reload as the gateway's.

The archiver and the loader only need the plans' typed columns, never a per-event check, so the plans
in force are handed to a callback when they change. A set that does not load is refused: logged once,
counted, and the plans in force stay (as at the gateway, gateway/tracking.py). At start a bad set is a
configuration error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from evpipe.plans.load import PlanSet
from evpipe.plans.model import PlanError
from evpipe.plans.source import Fingerprint, PlanSource

log = logging.getLogger("evpipe.plans")


class WatchMetrics:
    def __init__(self, process: str, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.reloads = Counter(f"evpipe_{process}_plan_reloads", "Tracking-plan changes put in force.", registry=r)
        self.reload_failures = Counter(
            f"evpipe_{process}_plan_reload_failures", "Tracking-plan changes refused (a file did not load): the "
            "plans in force before stay.", registry=r)
        self.refused = Gauge(f"evpipe_{process}_plan_files_refused", "1 while the plan files hold a set this "
                             "process refused, else 0.", registry=r)


class PlanWatcher:
    def __init__(self, source: PlanSource, reload_s: float, on_change: Callable[[PlanSet], None],
                 metrics: WatchMetrics) -> None:
        self.source, self.reload_s, self.on_change, self.metrics = source, reload_s, on_change, metrics
        self.plans = source.load()  # a bad set at start: PlanError, a configuration error for the caller
        self._refused: Fingerprint | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        on_change(self.plans)

    def poll(self) -> bool:
        """Load the plans again if their files changed; True when a new set is in force."""
        try:
            current = self.source.fingerprint()
            if current == self.plans.fingerprint:
                self._refused = None
                self.metrics.refused.set(0)
                return False
            if current == self._refused:  # refused as it is: said once, not every few seconds
                return False
            plans = self.source.load()
        except PlanError as exc:
            self._refuse(exc)
            return False
        self.on_change(plans)  # before the swap: a callback that fails leaves the old set, tried again
        self.plans, self._refused = plans, None
        self.metrics.refused.set(0)
        self.metrics.reloads.inc()
        log.info("tracking plans reloaded from %s: %s", self.source.location,
                 ", ".join(f"{p.source} v{p.version}" for p in plans.plans.values()) or "no plans")
        return True

    def _refuse(self, exc: PlanError) -> None:
        try:
            self._refused = self.source.fingerprint()
        except PlanError:
            self._refused = None
        self.metrics.reload_failures.inc()
        self.metrics.refused.set(1)
        log.error("tracking plans not reloaded from %s, the plans in force stay: %s", self.source.location, exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracking-plans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.reload_s):
            try:
                self.poll()
            except Exception:  # a failing callback (ClickHouse away) must not end the watching; logged with its trace
                log.exception("tracking plans: applying the change failed; tried again at the next look")

"""The tracking plans in force at this gateway, re-read from their directory or S3 prefix without a restart.

A reload is all or nothing: the directory's files are loaded and compiled aside, and only a set that
loads whole replaces the one in force, in one assignment (a request sees the old set or the new one,
never a mix). A set that does not load is refused, logged and counted; the old one stays.
"""

from __future__ import annotations

import asyncio
import logging

from evpipe.plans.check import SourceCheck
from evpipe.plans.load import PlanSet
from evpipe.plans.model import PlanError
from evpipe.plans.source import Fingerprint, open_source
from gateway.metrics import PlanMetrics

log = logging.getLogger("evpipe.gateway")


class TrackingPlans:
    def __init__(self, location: str, reload_s: float, metrics: PlanMetrics, s3_endpoint_url: str = "") -> None:
        self.source = open_source(location, s3_endpoint_url)  # a directory, s3://bucket/prefix, or None
        self.reload_s = reload_s
        self.metrics = metrics
        self.checks: dict[str, SourceCheck] = {}
        self._fingerprint: Fingerprint = ()
        self._refused: Fingerprint | None = None
        if self.source is not None:
            # At start a bad plan is a configuration error: better no gateway than one enforcing nothing.
            self._put_in_force(self.source.load())

    def for_source(self, source: str) -> SourceCheck | None:
        """The source's plan, or None: then its events are not looked at (no cost at all)."""
        return self.checks.get(source)

    def reload(self) -> bool:
        """Load the directory again if its files changed; True when a new set is in force."""
        plans = self._load_if_changed()
        if plans is None:
            return False
        self._apply(plans)
        return True

    async def run(self) -> None:
        """Look for changed plan files every GATEWAY_TRACKING_PLANS_RELOAD_S seconds (I/O off the loop)."""
        while True:
            await asyncio.sleep(self.reload_s)
            plans = await asyncio.to_thread(self._load_if_changed)
            if plans is not None:
                self._apply(plans)

    def _load_if_changed(self) -> PlanSet | None:
        if self.source is None:
            return None
        try:
            current = self.source.fingerprint()
            if current == self._fingerprint:  # unchanged, or changed back to the set in force
                self._refused = None
                self.metrics.refused.set(0)
                return None
            if current == self._refused:  # refused as it is: said once, not every few seconds
                return None
            return self.source.load()
        except (PlanError, OSError) as exc:
            self._refuse(exc)
            return None

    def _refuse(self, exc: Exception) -> None:
        try:
            self._refused = self.source.fingerprint() if self.source else None
        except (PlanError, OSError):
            self._refused = None
        self.metrics.reload_failures.inc()
        self.metrics.refused.set(1)
        log.error("tracking plans not reloaded, the plans in force stay: %s", exc)

    def _apply(self, plans: PlanSet) -> None:
        self._put_in_force(plans)
        self.metrics.reloads.inc()
        log.info("tracking plans reloaded: %s", _summary(plans))

    def _put_in_force(self, plans: PlanSet) -> None:
        self.checks = {source: SourceCheck(plan) for source, plan in plans.plans.items()}
        self._fingerprint, self._refused = plans.fingerprint, None
        self.metrics.refused.set(0)
        self.metrics.version.clear()
        for source, plan in plans.plans.items():
            self.metrics.version.labels(source).set(plan.version)


def _summary(plans: PlanSet) -> str:
    return ", ".join(f"{p.source} v{p.version} ({p.file})" for p in plans.plans.values()) or "no plans"

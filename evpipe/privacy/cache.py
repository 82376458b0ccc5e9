"""A process's copy of the suppression list, refreshed at most every ``refresh_s``.

The refresh delay bounds how long a new suppression takes to reach a process:
a subject added at time t is in every process's copy by t + ``refresh_s`` (plus
one store round trip), as long as the store answers. Deletions wait that long
after suppressing before they delete, so nothing written meanwhile slips past.

Two ways to read it:

* ``current()`` (the consumers): refreshes on the caller's thread when the copy
  is due, and raises :class:`StaleSuppressions` once the store has not answered
  for ``max_stale_s``; the runtime then retries the batch, so a consumer never
  writes with a list older than that (fail closed);
* ``snapshot()`` (the gateway's event loop): never blocks; a background task calls
  ``refresh()``. If the store stays unreachable the gateway keeps its last copy
  (fail open: the consumers are the backstop) and says so in its log and metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from evpipe.privacy.store import PrivacyStore, PrivacyStoreError
from evpipe.privacy.subjects import SuppressionSet

log = logging.getLogger("evpipe.privacy")


class StaleSuppressions(RuntimeError):
    """The store has not answered for longer than the staleness bound: nothing may be written meanwhile."""


class SuppressionCache:
    def __init__(self, store: PrivacyStore, refresh_s: float, max_stale_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.max_stale_s = max(max_stale_s, refresh_s)
        self.clock = clock
        self._set = SuppressionSet()
        self._loaded_at = clock()  # an empty list counts as fresh at start: the first refresh is due at once
        self._due = 0.0
        self._failing = False
        self._lock = threading.Lock()

    def snapshot(self) -> SuppressionSet:
        return self._set

    @property
    def age_s(self) -> float:
        return self.clock() - self._loaded_at

    def refresh(self) -> bool:
        """Read the list now; False (the previous copy kept) when the store did not answer."""
        try:
            fresh = self.store.suppressions()
        except PrivacyStoreError as exc:
            if not self._failing:
                log.warning("suppression list not refreshed, keeping the copy of %.0f s ago: %s", self.age_s, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("suppression list readable again (%d subjects)", len(fresh))
        self._set, self._loaded_at, self._failing = fresh, self.clock(), False
        return True

    def current(self) -> SuppressionSet:
        """The list, refreshed first when due; raises StaleSuppressions past the staleness bound."""
        now = self.clock()
        if now >= self._due:
            with self._lock:
                if self.clock() >= self._due:
                    self.refresh()
                    self._due = self.clock() + self.refresh_s
        if self.age_s > self.max_stale_s:
            raise StaleSuppressions(f"the suppression list could not be read for {self.age_s:.0f} s "
                                    f"(PRIVACY_MAX_STALE_S={self.max_stale_s:g}); retrying")
        return self._set

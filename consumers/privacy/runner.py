"""Carry a privacy request out, resumably: suppress, let every process see it, erase, check.

1. The subject goes on the suppression list and the time is recorded (once).
2. The runner waits until every process's copy of the list holds it: the
   recorded time plus ``settle_s`` (PRIVACY_REFRESH_S plus a margin). From then
   on nothing new of the subject reaches a sink, so what is erased stays erased.
3. Each store's eraser removes the rows and records what it did and the check
   that 0 remain (``eraser.py``).

Every step is idempotent and saved as it is done: killed anywhere, the same
command run again finishes the request. A request already done runs again as
a new run (its previous steps are kept under ``history``): the erasers find
nothing and the checks are repeated. A step whose check found rows left
starts over on the next run; a step cut short resumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

from consumers.privacy.eraser import Eraser
from evpipe.privacy.request import Ledger, PrivacyRequest

log = logging.getLogger("evpipe.privacy")


class Runner:
    def __init__(self, ledger: Ledger, erasers: Sequence[Eraser], settle_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ledger = ledger
        self.erasers = erasers
        self.settle_s = settle_s
        self.sleep = sleep

    def run(self, request: PrivacyRequest) -> PrivacyRequest:
        if request.status == "done" or request.runs == 0:  # a new run; anything else resumes the last one
            if request.steps:
                request.history.append({"run": request.runs, "status": request.status, "steps": request.steps})
            request.steps = {}
            request.runs += 1
        # A step whose check found rows starts over; a step in progress resumes; a done one is kept.
        request.steps = {name: step for name, step in request.steps.items() if step.get("status") != "failed"}
        request.status, request.error = "running", None
        self.ledger.suppress(request)  # saves
        if request.action == "suppress":
            request.step("suppress").update(status="done", done_at=request.suppressed_at)
            return self._done(request)
        self._settle(request)
        try:
            for eraser in self.erasers:
                if request.steps.get(eraser.name, {}).get("status") != "done":
                    eraser.erase(request, lambda: self.ledger.save(request))
        except Exception as exc:
            request.status, request.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            self.ledger.save(request)
            raise
        return self._done(request)

    def _settle(self, request: PrivacyRequest) -> None:
        assert request.suppressed_at is not None
        since = dt.datetime.fromisoformat(request.suppressed_at)
        wait = self.settle_s - (dt.datetime.now(dt.UTC) - since).total_seconds()
        if wait > 0:
            log.info("waiting %.1f s for every process to refresh its suppression list", wait)
            self.sleep(wait)

    def _done(self, request: PrivacyRequest) -> PrivacyRequest:
        failed = [name for name, step in request.steps.items() if step.get("status") != "done"]
        request.status = "failed" if failed else "done"
        request.error = f"rows remain in: {', '.join(failed)}" if failed else None
        self.ledger.save(request)
        return request

"""What every store's eraser does for a request: remove the subject's rows, record it, check 0 remain.

An eraser writes its outcome into its own step of the request
(``request.step(name)``) and calls ``save`` after each thing it did, so a
rerun after a crash sees what was done and repeats only what is idempotent.
Each step ends with ``remaining``: the rows of the subject still found by a
fresh read, and ``status``: done when that is 0, failed otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from evpipe.privacy.request import PrivacyRequest, now_text

Save = Callable[[], None]


class Eraser(Protocol):
    name: str  # the step's name in the ledger: clickhouse, archive, postgres

    def erase(self, request: PrivacyRequest, save: Save) -> None:
        """Remove the subject's rows, recording progress in ``request.step(self.name)``."""


def finish(step: dict[str, Any], remaining: int, save: Save) -> None:
    step.update(remaining=remaining, checked_at=now_text(), status="done" if remaining == 0 else "failed")
    save()

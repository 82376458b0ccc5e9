"""Capped exponential backoff: the one retry delay of every process (consumer runtime, workers, clients)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays ``initial_s``, 2x, 4x, ... capped at ``cap_s``; :meth:`reset` after a success starts over."""

    initial_s: float
    cap_s: float
    jitter: float = 0.0  # 0.2: each delay is 80-100 % of its step, so many clients do not retry in step
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, counting this failure."""
        self.failures += 1
        step = delay(self.initial_s, self.cap_s, self.failures)
        return step * random.uniform(1.0 - self.jitter, 1.0) if self.jitter else step

    def reset(self) -> None:
        self.failures = 0


def delay(initial_s: float, cap_s: float, attempts: int) -> float:
    """The wait after ``attempts`` failures in a row (1 -> ``initial_s``), never above ``cap_s``."""
    return float(min(cap_s, initial_s * 2 ** min(max(attempts, 1) - 1, 30)))

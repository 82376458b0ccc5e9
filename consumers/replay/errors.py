"""The one error of the replay commands: what went wrong and what to do, shown without a traceback."""

from __future__ import annotations


class ReplayError(RuntimeError):
    """A replay cannot run or finish; the message says why and what to do."""

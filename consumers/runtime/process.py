"""Process-wide set-up a consumer's entry point owns: SIGTERM/SIGINT ask the running loop to stop.

The library never installs signal handlers (tests and benchmarks run loops on
threads and call ``stop()``); each ``evpipe`` command wraps its run in
:func:`run_until_signalled` on the main thread.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Protocol

log = logging.getLogger("evpipe.consumer")


class Stoppable(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...


def run_until_signalled(runner: Stoppable) -> None:
    """``runner.run()`` with SIGTERM/SIGINT calling ``runner.stop()`` (flush, commit, leave the group)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: flushing and stopping", signum)
        runner.stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)

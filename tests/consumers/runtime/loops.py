"""Running a consumer loop on a thread in tests, and waiting for what it does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from consumers.runtime import ConsumerLoop


@contextmanager
def running(loop: ConsumerLoop) -> Iterator[ConsumerLoop]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            loop.run()
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.stop()
        thread.join(60)
        assert not thread.is_alive(), "loop did not stop"
        assert not errors, errors


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, state: Callable[[], object] = lambda: "") -> None:
    """``state``: what the timeout's message shows of the loop (a bare timeout cannot be diagnosed from CI)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting {state()}"
        time.sleep(0.01)

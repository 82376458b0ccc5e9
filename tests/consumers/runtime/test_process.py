"""The entry point's signal wiring: SIGTERM stops the loop; the library itself installs nothing."""

from __future__ import annotations

import os
import signal
import threading

from consumers.runtime.process import run_until_signalled


class Runner:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def run(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        assert self.stopped.wait(5), "SIGTERM did not reach stop()"

    def stop(self) -> None:
        self.stopped.set()


def test_sigterm_calls_stop_and_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    runner = Runner()
    run_until_signalled(runner)
    assert runner.stopped.is_set()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_loop_installs_no_signal_handlers() -> None:
    import inspect

    from consumers.runtime import loop

    assert "signal" not in inspect.getsource(loop)

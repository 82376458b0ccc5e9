"""The one retry delay: doubling from the initial delay, capped, reset after a success, optional jitter."""

from __future__ import annotations

from evpipe.backoff import Backoff, delay


def test_delays_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert delay(1.0, 30.0, 10_000) == 30.0  # no overflow after many failures


def test_jitter_stays_within_its_share_of_the_step() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.2)
    for step in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert 0.8 * step <= backoff.next_delay() <= step

"""The consumer's collector policy: a raised young-generation threshold and a frozen start-up heap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from evpipe.gctune import tune_for_throughput


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_raises_the_young_threshold_and_freezes_the_heap() -> None:
    gc.unfreeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    tune_for_throughput(50_000)
    assert gc.get_threshold() == (50_000, gen1, gen2)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_zero_keeps_pythons_defaults() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_for_throughput(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0

"""The rendered objects of each overlay, for the manifest tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.support import OVERLAYS, render


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    return render(request.param)

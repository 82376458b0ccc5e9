"""The fallback renderer produces what kustomize produces, so the manifest tests mean the same everywhere."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.infra.kustomize_lite import build
from tests.infra.support import K8S, OVERLAYS, kustomize_command, render_with_kustomize


def _normalised(objects: Any) -> list[str]:
    """Objects as sorted YAML text, with kustomize's ConfigMap content hash removed."""
    import yaml

    text = [yaml.safe_dump(o, sort_keys=True) for o in objects]
    return sorted(re.sub(r"(evpipe-config)-[a-z0-9]{10}\b", r"\1", t) for t in text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_lite_renderer_matches_kustomize(overlay: str) -> None:
    if kustomize_command() is None:
        pytest.skip("no kustomize or kubectl on PATH to compare with")
    assert _normalised(build(K8S / "overlays" / overlay)) == _normalised(render_with_kustomize(overlay))


def test_lite_renderer_refuses_features_it_does_not_implement(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text("namePrefix: x-\nresources: []\n")
    with pytest.raises(ValueError, match="namePrefix"):
        build(tmp_path)

"""Plan documents shared by the tracking-plan tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "revenue"],
    "properties": {
        "order_id": {"type": "string", "minLength": 1},
        "revenue": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
    },
}


def plan(source: str = "source_a", version: int = 1, mode: str = "enforce", unplanned: str = "allow",
         **events: Any) -> dict[str, Any]:
    return {"source": source, "version": version, "mode": mode, "unplanned": unplanned,
            "events": events or {"order_completed": {"properties": ORDER_SCHEMA}}}


def write(directory: Path, name: str, document: Any) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False) if isinstance(document, dict) else document)
    return path

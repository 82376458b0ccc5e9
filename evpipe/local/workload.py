"""A realistic sample workload for demos and smoke tests: several sources, users and event types.

Deterministic for a given seed, so a demo run can be checked against what it sent.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

EVENT_TYPES: tuple[tuple[str, float], ...] = (
    ("page_view", 0.55),
    ("product_viewed", 0.2),
    ("add_to_cart", 0.1),
    ("checkout_started", 0.06),
    ("order_completed", 0.04),
    ("signup", 0.05),
)
PAGES = ("/", "/pricing", "/docs", "/blog/launch", "/product/42", "/cart")
PRODUCTS = ("sku-101", "sku-202", "sku-303", "sku-404")


def sample_events(count: int, seed: int = 7, users: int = 50) -> Iterator[dict[str, Any]]:
    """Native-API events with client event ids (so a resend is idempotent)."""
    rng = random.Random(seed)
    names = [t for t, _ in EVENT_TYPES]
    weights = [w for _, w in EVENT_TYPES]
    for _ in range(count):
        kind = rng.choices(names, weights)[0]
        user = rng.randrange(users)
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "properties": _properties(rng, kind),
            "context": {"library": {"name": "evpipe-demo", "version": "1.0"}, "locale": rng.choice(["en-US", "de-DE"])},
        }
        if user % 5 == 0:
            event["anonymous_id"] = f"anon-{user}"
        else:
            event["user_id"] = f"user-{user}"
        yield event


def _properties(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "page_view":
        return {"path": rng.choice(PAGES), "referrer": rng.choice(["", "google", "newsletter"])}
    if kind in ("product_viewed", "add_to_cart"):
        return {"sku": rng.choice(PRODUCTS), "price": round(rng.uniform(5, 200), 2)}
    if kind == "order_completed":
        return {"order_id": f"o-{rng.randrange(10**6)}", "revenue": round(rng.uniform(20, 500), 2)}
    return {}

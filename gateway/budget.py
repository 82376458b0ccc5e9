"""Memory budgets for request bodies: the whole gateway, each API key, and requests not yet authenticated.

A request's bytes are charged to every budget that covers it (``Hold``), all or
nothing, and released together when the request ends. Without per-key and
unauthenticated budgets one client, or a stranger with no key at all, could
fill the gateway's whole budget with stalled bodies and turn every other
client's request into a 503.
"""

from __future__ import annotations

from gateway.errors import BodyError


class MemoryBudget:
    """Bytes of request bodies held at once (read, inflated, or waiting for the backend)."""

    def __init__(self, limit: int, setting: str, status: int = 503, holder: str = "gateway") -> None:
        self.limit = limit
        self.setting = setting
        self.status = status  # 503 for the shared budgets; 429 for one key's, which is that client's own doing
        self.holder = holder
        self.used = 0

    def room_for(self, size: int) -> bool:
        return self.used + size <= self.limit

    def refusal(self) -> BodyError:
        return BodyError(self.status, f"{self.holder} is holding {self.used} bytes of request bodies "
                                      f"({self.setting}={self.limit}): retry shortly", retry_after=1)


class KeyBudgets:
    """One budget per API key, made on first use and dropped when the key holds nothing (bounded by live keys)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_key: dict[str, MemoryBudget] = {}

    def for_key(self, key_id: str) -> MemoryBudget:
        budget = self._by_key.get(key_id)
        if budget is None:
            budget = MemoryBudget(self.limit, "GATEWAY_MAX_INFLIGHT_BYTES_PER_KEY", 429, "this API key")
            self._by_key[key_id] = budget
        return budget

    def forget_idle(self, budget: MemoryBudget, key_id: str) -> None:
        if budget.used == 0 and self._by_key.get(key_id) is budget:
            del self._by_key[key_id]

    def __len__(self) -> int:
        return len(self._by_key)


class Hold:
    """What one request holds, charged to each of its budgets at once."""

    __slots__ = ("budgets", "held")

    def __init__(self, budgets: tuple[MemoryBudget, ...]) -> None:
        self.budgets = budgets
        self.held = 0

    def charge(self, size: int) -> None:
        for budget in self.budgets:
            if not budget.room_for(size):
                raise budget.refusal()
        for budget in self.budgets:
            budget.used += size
        self.held += size

    def release(self) -> None:
        for budget in self.budgets:
            budget.used -= self.held
        self.held = 0

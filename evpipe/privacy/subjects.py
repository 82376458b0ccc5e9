"""Who a privacy request is about, and the set of suppressed subjects an event is checked against."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["user_id", "anonymous_id"]
KINDS: tuple[Kind, ...] = get_args(Kind)
ALL_SOURCES = ""  # a subject with this source is suppressed for every source


@dataclass(frozen=True, order=True)
class Subject:
    kind: Kind
    value: str
    source: str = ALL_SOURCES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.value:
            raise ValueError(f"{self.kind} must not be empty")

    def digest(self) -> str:
        """A stable name for the subject (request ids), without its value in clear."""
        text = f"{self.kind}\x00{self.value}\x00{self.source}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def describe(self) -> str:
        where = f" of source {self.source}" if self.source else " (all sources)"
        return f"{self.kind}={self.value}{where}"

    def document(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "source": self.source}

    @classmethod
    def of(cls, document: dict[str, str]) -> Subject:
        kind = document["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown subject kind {kind!r}")
        return cls(kind, document["value"], document.get("source", ALL_SOURCES))  # type: ignore[arg-type]


class SuppressionSet:
    """An immutable set of suppressed subjects; ``matches`` is a few set lookups per event."""

    def __init__(self, subjects: Iterable[Subject] = ()) -> None:
        self.subjects = frozenset(subjects)
        self._keys = frozenset((s.kind, s.value, s.source) for s in self.subjects)

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def empty(self) -> bool:
        return not self._keys

    def matches(self, source_id: str | None, user_id: str | None, anonymous_id: str | None) -> bool:
        keys = self._keys
        if not keys:
            return False
        for kind, value in (("user_id", user_id), ("anonymous_id", anonymous_id)):
            if value is not None and ((kind, value, ALL_SOURCES) in keys or (kind, value, source_id) in keys):
                return True
        return False

    def groups(self) -> dict[tuple[Kind, str], list[str]]:
        """The suppressed values by (kind, source): what a vectorised filter tests column by column."""
        grouped: dict[tuple[Kind, str], list[str]] = {}
        for subject in sorted(self.subjects):
            grouped.setdefault((subject.kind, subject.source), []).append(subject.value)
        return grouped

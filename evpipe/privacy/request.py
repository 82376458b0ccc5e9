"""One privacy request as recorded in the ledger: who asked, when, about whom, and what was done where.

The id is a function of the action and the subject, so asking twice names the
same request: a rerun resumes it (or, once done, runs its idempotent steps
again and re-checks that nothing remains). Each step records its own outcome:
rows and files touched, the check that 0 remain, and when.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from evpipe.privacy.store import PrivacyStore
from evpipe.privacy.subjects import Subject

Action = Literal["delete", "suppress"]
Status = Literal["pending", "running", "done", "failed"]


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def request_id(action: Action, subject: Subject) -> str:
    return f"{'del' if action == 'delete' else 'sup'}-{subject.digest()}"


@dataclass
class PrivacyRequest:
    id: str
    action: Action
    subject: Subject
    requested_by: str
    requested_at: str
    status: Status = "pending"
    suppressed_at: str | None = None
    runs: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier runs' steps

    @classmethod
    def new(cls, action: Action, subject: Subject, requested_by: str) -> PrivacyRequest:
        return cls(request_id(action, subject), action, subject, requested_by, now_text())

    def step(self, name: str) -> dict[str, Any]:
        return self.steps.setdefault(name, {"status": "pending"})

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "subject": self.subject.document(),
                "requested_by": self.requested_by, "requested_at": self.requested_at, "status": self.status,
                "suppressed_at": self.suppressed_at, "runs": self.runs, "steps": self.steps, "error": self.error,
                "updated_at": self.updated_at, "history": self.history}

    @classmethod
    def of(cls, doc: dict[str, Any]) -> PrivacyRequest:
        return cls(doc["id"], doc["action"], Subject.of(doc["subject"]), doc["requested_by"], doc["requested_at"],
                   doc.get("status", "pending"), doc.get("suppressed_at"), doc.get("runs", 0),
                   doc.get("steps") or {}, doc.get("error"), doc.get("updated_at"), doc.get("history") or [])


class Ledger:
    """The requests in a privacy store: every change is saved at once (a rerun resumes from the last save)."""

    def __init__(self, store: PrivacyStore) -> None:
        self.store = store

    def save(self, request: PrivacyRequest) -> None:
        request.updated_at = now_text()
        self.store.save(request.id, request.document())

    def get(self, request_id: str) -> PrivacyRequest | None:
        doc = self.store.load(request_id)
        return PrivacyRequest.of(doc) if doc else None

    def all(self) -> list[PrivacyRequest]:
        return [PrivacyRequest.of(doc) for doc in self.store.requests()]

    def open(self, action: Action, subject: Subject, requested_by: str) -> PrivacyRequest:
        """The request for this action and subject: the recorded one if any, else a new one (saved)."""
        found = self.get(request_id(action, subject))
        if found is not None:
            return found
        request = PrivacyRequest.new(action, subject, requested_by)
        self.save(request)
        return request

    def suppress(self, request: PrivacyRequest) -> None:
        """Put the subject on the list (idempotent) and record when it was first put there."""
        self.store.suppress(request.subject, request.id)
        if request.suppressed_at is None:
            request.suppressed_at = now_text()
        self.save(request)

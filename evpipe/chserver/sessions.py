"""HTTP sessions (``session_id``): the database and settings a client's SET and USE statements chose.

The engine has one session of its own, shared by every request, so a client's
SET or USE is never run on it: it is remembered here, per ``session_id``, and
applied to that session's later statements. Without a session_id, SET and USE
have no lasting effect, as on a ClickHouse server. Sessions expire after their
``session_timeout`` (default 60 s) without use; at most ``limit`` are kept.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from evpipe.chserver import sqltext

_ASSIGNMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^,]+?)\s*(?:,|$)")


@dataclass
class Session:
    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    last_used: float = 0.0


class Sessions:
    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str | None, timeout: str | None = None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        self._expire(now)
        session = self._by_id.pop(session_id, None) or Session()
        if timeout:
            try:
                session.timeout_s = max(1.0, min(float(timeout), 3600.0))
            except ValueError:
                pass
        session.last_used = now
        self._by_id[session_id] = session
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return session

    def apply(self, session: object, kind: str, sql: str) -> None:
        assert isinstance(session, Session)
        words = sqltext.tokens(sql)
        if kind == "USE":
            # The lexer drops quoted names, so the database is read from the raw text: USE db, USE `my db`.
            name = sql[words[0].end:].strip().rstrip(";").strip().strip("`\"")
            if name:
                session.database = name
            return
        body = sql[words[0].end:] if words else ""
        for name, value in _ASSIGNMENT.findall(body.strip().rstrip(";")):
            session.settings[name] = _unquote(value.strip())

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if now - s.last_used > s.timeout_s]:
            del self._by_id[key]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return value

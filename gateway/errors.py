"""The one exception a request's handling raises to answer with a 4xx/5xx and a reason."""

from __future__ import annotations


class BodyError(Exception):
    """A request-level problem: answered with ``status`` and ``message``.

    ``close`` asks for the connection to be closed after the answer (a client that
    stalled mid-body cannot be trusted to be at a request boundary).
    """

    def __init__(self, status: int, message: str, retry_after: int | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.close = close

    @property
    def keeps_body(self) -> bool:
        """Whether the request is refused for what it sent (kept in the invalid store), not for load or time."""
        return 400 <= self.status < 500 and self.status not in (401, 408, 429)

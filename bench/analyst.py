"""A read-only analyst during a benchmark: queries ClickHouse once a second and tries an INSERT each time.

It answers the question "can analysts use the same ClickHouse while the pipeline loads it": every query
should answer, and every INSERT should be refused with ClickHouse's readonly error (code 164).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from clickhouse_connect.driver.exceptions import DatabaseError

ANALYST = ("analyst", "analyst")  # user:password, configured as readonly on the benchmark's server
SERVER_USERS = f"{ANALYST[0]}:{ANALYST[1]}:readonly"


@dataclass
class Analyst:
    url: str
    answered: int = 0
    failed: int = 0
    refused_164: int = 0
    inserted: int = 0  # an INSERT that went through: must stay 0
    seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyst", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        import clickhouse_connect

        address = urlparse(self.url)
        client = clickhouse_connect.get_client(host=address.hostname, port=address.port, username=ANALYST[0],
                                               password=ANALYST[1], database="evpipe")
        while not self._stop.wait(1.0):
            self._query(client)
            self._try_insert(client)

    def _query(self, client: object) -> None:
        started = time.perf_counter()
        try:
            client.query("SELECT type, count() FROM events GROUP BY type")  # type: ignore[attr-defined]
        except DatabaseError:
            self.failed += 1
            return
        self.answered += 1
        self.seconds.append(time.perf_counter() - started)

    def _try_insert(self, client: object) -> None:
        try:
            client.command("INSERT INTO events_per_minute (source_id, type, minute, events) "  # type: ignore[attr-defined]
                           "VALUES ('analyst', 'x', now(), 1)")
        except DatabaseError as exc:
            self.refused_164 += "164" in str(exc)
            return
        self.inserted += 1

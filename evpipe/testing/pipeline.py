"""A running pipeline as a test sees it: where its parts answer, and the calls a test makes on them.

:class:`Pipeline` talks to the pipeline only through its public faces, the way
a user's producers and analysts do: events go to the gateway over HTTP, rows
come back from ClickHouse over its HTTP interface, and the archive is read as a
hive-partitioned Parquet dataset. Who started the servers (local processes or
containers) does not matter to it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

# Well below the gateway's limits (10,000 events and 5 MiB per request) for ordinary events.
EVENTS_PER_REQUEST = 1000
IDS_PER_QUERY = 5000
POLL_INTERVAL_S = 0.25


class PipelineError(RuntimeError):
    """The pipeline refused something, or did not get there in time; the message says what and where to look."""


@dataclass(frozen=True)
class Endpoints:
    """Where a running pipeline answers."""

    gateway_url: str  # http://host:port, no trailing slash
    api_key: str  # a key the gateway accepts (its source id is `test`)
    clickhouse_url: str  # http://[user:password@]host:port
    archive_dir: Path  # the archiver's root directory (hive partitions under it)
    logs: str  # where the processes' logs are, for error messages
    database: str = "evpipe"


class Pipeline:
    """Send events through a running pipeline and read them back from ClickHouse and the archive."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._clickhouse: Client | None = None

    @property
    def gateway_url(self) -> str:
        return self.endpoints.gateway_url

    @property
    def api_key(self) -> str:
        return self.endpoints.api_key

    @property
    def clickhouse_url(self) -> str:
        return self.endpoints.clickhouse_url

    @property
    def archive_dir(self) -> Path:
        return self.endpoints.archive_dir

    def send(self, events: Mapping[str, Any] | Iterable[Mapping[str, Any]], allow_rejected: bool = False) -> list[str]:
        """POST native events to ``/v1/events``; returns the accepted events' ids, in order.

        An event without ``event_id`` gets a fresh UUID (the caller's dicts are not changed),
        so every accepted event can be waited for. Raises :class:`PipelineError` when the
        gateway refuses the request, or any event of it unless ``allow_rejected``.
        """
        batch = [dict(events)] if isinstance(events, Mapping) else [dict(e) for e in events]
        for event in batch:
            event.setdefault("event_id", str(uuid.uuid4()))
        accepted: list[str] = []
        for start in range(0, len(batch), EVENTS_PER_REQUEST):
            chunk = batch[start:start + EVENTS_PER_REQUEST]
            rejected = self._post_events(chunk)
            if rejected and not allow_rejected:
                raise PipelineError(f"the gateway rejected {len(rejected)} of {len(chunk)} events: "
                                    f"{json.dumps(rejected[:5])}")
            refused = {int(r["index"]) for r in rejected}
            accepted += [str(e["event_id"]) for i, e in enumerate(chunk) if i not in refused]
        return accepted

    def _post_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One request; the gateway's per-event rejections (``[{"index", "error"}]``)."""
        status, answer = self.post("/v1/events", events)
        if status in (200, 400) and isinstance(answer.get("rejected"), list):
            return list(answer["rejected"])
        raise PipelineError(f"POST /v1/events answered {status}: {answer}; logs: {self.endpoints.logs}")

    def post(self, path: str, body: object) -> tuple[int, dict[str, Any]]:
        """POST ``body`` as JSON to the gateway with the api key; (status, JSON answer). Any status is returned."""
        request = urllib.request.Request(
            self.gateway_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _json_object(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, _json_object(refused.read())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run SQL on the pipeline's ClickHouse (database ``evpipe``: tables ``events``, ``events_per_minute``)."""
        return [tuple(row) for row in self._client().query(sql).result_rows]

    def _client(self) -> Client:
        if self._clickhouse is None:
            from evpipe.clickhouse import connect

            self._clickhouse = connect(self.clickhouse_url, timeout_s=30.0)
            self._clickhouse.database = self.endpoints.database
        return self._clickhouse

    def archive_rows(self) -> pa.Table:
        """Every row in the Parquet archive, with the hive partition columns ``topic``, ``dt`` and ``hour``."""
        import pyarrow.dataset as ds

        from schemas.arrow import arrow_schema

        files = sorted(str(f) for f in self.archive_dir.rglob("*.parquet") if _is_data_file(f, self.archive_dir))
        if not files:
            return arrow_schema().empty_table()
        dataset = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(self.archive_dir))
        return dataset.to_table()

    def wait_loaded(self, ids: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until ClickHouse holds every one of ``ids``; PipelineError naming the missing ones after ``timeout``."""
        self._wait(ids, timeout, "ClickHouse", self._loaded_ids)

    def wait_archived(self, ids: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until the archive holds every one of ``ids`` (files close every second or so)."""
        self._wait(ids, timeout, "the archive", self._archived_ids)

    def _loaded_ids(self, wanted: set[str]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(wanted)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            literals = ",".join(f"'{i}'" for i in ordered[start:start + IDS_PER_QUERY])
            found |= {str(row[0]) for row in self.query(
                f"SELECT DISTINCT toString(event_id) FROM events WHERE event_id IN ({literals})")}
        return found

    def _archived_ids(self, wanted: set[str]) -> set[str]:
        return wanted & set(self.archive_rows().column("event_id").to_pylist())

    def _wait(self, ids: Iterable[str], timeout: float, where: str, present: Callable[[set[str]], set[str]]) -> None:
        missing = {_canonical_uuid(i) for i in ids}
        total = len(missing)
        deadline = time.monotonic() + timeout
        while missing:
            missing -= present(missing)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"{len(missing)} of {total} events are not in {where} after {timeout:.0f}s "
                                    f"(e.g. {sorted(missing)[:3]}); logs: {self.endpoints.logs}")
            time.sleep(POLL_INTERVAL_S)

    def close(self) -> None:
        if self._clickhouse is not None:
            self._clickhouse.close()
            self._clickhouse = None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"body": body[:500].decode(errors="replace")}
    return value if isinstance(value, dict) else {"body": value}


def _canonical_uuid(value: str) -> str:
    """The form ClickHouse and the archive print (lowercase, hyphenated); ValueError for a non-UUID."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"not an event id (a UUID): {value!r}") from None


def _is_data_file(path: Path, root: Path) -> bool:
    """Data files only: the archiver's bookkeeping lives under ``_``-prefixed folders, temp files start with ``.``."""
    return not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)


class PipelineRunner:
    """What starts and stops a pipeline (local processes or containers); ``with runner as pipeline:``."""

    pipeline: Pipeline | None = None

    def start(self) -> Pipeline:
        """Launch everything; whatever started is stopped again if the launch fails halfway."""
        try:
            self.launch()
        except BaseException:
            self.stop()
            raise
        self.pipeline = Pipeline(self.endpoints())
        return self.pipeline

    def launch(self) -> None:
        raise NotImplementedError

    def endpoints(self) -> Endpoints:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

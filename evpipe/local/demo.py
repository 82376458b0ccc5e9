"""`evpipe dev demo`: send the sample workload through the running local stack and show where it landed.

It sends the same events every run (deterministic ids), so ClickHouse, which drops
repeated event ids on insert, shows the same counts after a second run. Queries go
through `evpipe query` (a subprocess) against the stack's ClickHouse, the path an
analyst uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from evpipe.local.stack import DEMO_KEYS, StackSettings, http_ok
from evpipe.local.workload import sample_events

LIBRARY = "evpipe-demo"  # context.library.name of every demo event: the demo counts only its own
BATCH = 500
COUNT_SQL = (
    "SELECT source_id, type, count() AS events FROM events "
    f"WHERE JSONExtractString(context, 'library', 'name') = '{LIBRARY}' "
    "GROUP BY source_id, type ORDER BY source_id, events DESC, type"
)


class DemoError(RuntimeError):
    """The demo could not finish; the message says why and what to do."""


def workload(count: int) -> list[tuple[str, dict[str, Any]]]:
    """(source, event) pairs: the sample events split over the demo's two sources."""
    sources = sorted(DEMO_KEYS)
    return [(sources[i % len(sources)], event) for i, event in enumerate(sample_events(count))]


def expected_counts(sent: list[tuple[str, dict[str, Any]]]) -> Counter[tuple[str, str]]:
    return Counter((source, event["type"]) for source, event in sent)


def post_batch(url: str, key: str, events: list[dict[str, Any]], attempts: int = 10) -> int:
    """POST one batch; retries 429/503 after Retry-After (the ids are the client's, so a resend is safe)."""
    body = json.dumps(events).encode()
    for _ in range(attempts):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
                if answer.get("rejected"):
                    raise DemoError(f"the gateway rejected demo events: {answer['rejected'][:3]}")
                return int(answer["accepted"])
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise DemoError(f"the gateway answered {exc.code}: {exc.read()[:300]!r}") from None
            time.sleep(float(exc.headers.get("Retry-After") or 1))
        except OSError as exc:
            raise DemoError(f"the gateway at {url} does not answer ({exc}); run: evpipe dev up") from None
    raise DemoError(f"the gateway kept answering 429/503 after {attempts} attempts; see `evpipe dev status`")


def send(settings: StackSettings, sent: list[tuple[str, dict[str, Any]]]) -> int:
    url = f"http://127.0.0.1:{settings.gateway_port}/v1/events"
    accepted = 0
    for source in DEMO_KEYS:
        events = [e for s, e in sent if s == source]
        for start in range(0, len(events), BATCH):
            accepted += post_batch(url, DEMO_KEYS[source], events[start:start + BATCH])
    return accepted


def query(settings: StackSettings, sql: str) -> list[dict[str, Any]]:
    """Run ``sql`` with `evpipe query --format json` against this stack's ClickHouse."""
    url = os.environ.get("CLICKHOUSE_URL") or f"http://127.0.0.1:{settings.evpipe_clickhouse_port}"
    env = os.environ | {"EVPIPE_STATE_DIR": str(settings.evpipe_state_dir.resolve()), "CLICKHOUSE_URL": url}
    done = subprocess.run([sys.executable, "-m", "evpipe", "query", "--format", "json", sql],
                          check=False, capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise DemoError(f"evpipe query failed: {done.stderr.strip() or done.stdout.strip()}")
    return list(json.loads(done.stdout))


def wait_loaded(settings: StackSettings, expected: Counter[tuple[str, str]], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(settings, COUNT_SQL)
        if Counter({(r["source_id"], r["type"]): int(r["events"]) for r in rows}) == expected:
            return rows
        if time.monotonic() > deadline:
            raise DemoError(f"ClickHouse shows {sum(int(r['events']) for r in rows)} of {sum(expected.values())} "
                            f"demo events after {timeout:.0f}s; see the loader's log under "
                            f"{settings.evpipe_state_dir}/logs")
        time.sleep(1.0)


def archive_dir(settings: StackSettings) -> Path | None:
    uri = os.environ.get("ARCHIVE_URI", "")
    if uri.startswith("s3://"):
        return None
    return Path(uri.removeprefix("file://")) if uri else settings.evpipe_state_dir.resolve() / "archive"


def archive_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet")) if root.exists() else []


def wait_archived(root: Path, ids: set[str], timeout: float) -> list[Path]:
    """Wait until every sent id is in a closed Parquet file (the archiver closes files every few seconds)."""
    import pyarrow.parquet as pq

    deadline = time.monotonic() + timeout
    while True:
        files = archive_files(root)
        seen: set[str] = set()
        for f in files:
            seen.update(pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist())
        if ids <= seen:
            return files
        if time.monotonic() > deadline:
            raise DemoError(f"the archive under {root} holds {len(ids & seen)} of {len(ids)} demo events after "
                            f"{timeout:.0f}s; see the archiver's log")
        time.sleep(1.0)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'source_id':<10} {'type':<18} {'events':>8}")
    for r in rows:
        print(f"{r['source_id']:<10} {r['type']:<18} {int(r['events']):>8,}")
    print(f"{'':<10} {'total':<18} {sum(int(r['events']) for r in rows):>8,}")


def print_files(root: Path, files: list[Path]) -> None:
    import pyarrow.parquet as pq

    shown = files[-10:]
    print(f"\n{len(files)} Parquet file(s) under {root}" + (f" (the last {len(shown)}):" if len(files) > 10 else ":"))
    for f in shown:
        print(f"  {f.relative_to(root)}  {pq.read_metadata(f).num_rows:,} rows, {f.stat().st_size:,} bytes")


def run(settings: StackSettings, count: int, timeout: float) -> None:
    gateway = f"http://127.0.0.1:{settings.gateway_port}"
    if not http_ok(f"{gateway}/readyz"):
        raise DemoError(f"no ready gateway at {gateway}; start the stack with: evpipe dev up")
    sent = workload(count)
    expected = expected_counts(sent)
    print(f"==> sending {len(sent):,} sample events ({len(expected)} source/type pairs, sources "
          f"{', '.join(sorted(DEMO_KEYS))}) to {gateway}/v1/events", flush=True)
    accepted = send(settings, sent)
    print(f"    accepted {accepted:,} (the same event ids every run: a second run stores nothing twice)")
    print("==> waiting until ClickHouse shows them (evpipe query) ...", flush=True)
    started = time.monotonic()
    rows = wait_loaded(settings, expected, timeout)
    print(f"    visible after {time.monotonic() - started:.1f}s\n")
    print(f'$ evpipe query "{COUNT_SQL}"')
    print_table(rows)
    root = archive_dir(settings)
    if root is not None:
        print(f"\n==> waiting until the archive holds them ({root}) ...", flush=True)
        files = wait_archived(root, {e["event_id"] for _, e in sent}, timeout)
        print_files(root, files)
    print_next_steps(settings)


def print_next_steps(settings: StackSettings) -> None:
    key = DEMO_KEYS["web"]
    state = settings.evpipe_state_dir
    print(f"""
The stack keeps running. Next:
  send your own events:
    curl -H 'Authorization: Bearer {key}' -d '{{"type":"signup","user_id":"u1"}}' \\
      http://127.0.0.1:{settings.gateway_port}/v1/events
  query:   .venv/bin/evpipe query "SELECT type, count() FROM events GROUP BY type ORDER BY 2 DESC"
  status:  .venv/bin/evpipe dev status     (logs: {state}/logs/)
  stop:    .venv/bin/evpipe dev down""")

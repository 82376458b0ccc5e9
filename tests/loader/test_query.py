"""`evpipe query`: output formats, the README's sample queries, and the locked embedded engine."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from consumers.loader.admin import AdminServer
from consumers.loader.query import QueryError, Result, endpoint_file, render, run_local, run_remote
from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from tests.loader.events import batch, counts, event
from tests.providers import Service

ROOT = Path(__file__).resolve().parents[2]
EVPIPE = [sys.executable, "-m", "evpipe"]


def readme_queries() -> dict[str, str]:
    """The ```sql blocks of the README's loader section, keyed by their first comment line."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Loader and queries", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0].lstrip("- ").strip(): block for block in blocks}


def test_render_formats() -> None:
    result = Result(["type", "n", "at"], [["page_view", 3, dt.datetime(2026, 1, 2, 3, 4, 5)], ["a,b", 10, None]])
    table = render(result, "table").splitlines()
    assert table[1] == "| type      |  n | at                  |"
    assert table[3] == "| page_view |  3 | 2026-01-02 03:04:05 |"
    assert table[-1] == "2 rows"
    assert render(result, "csv").splitlines() == ["type,n,at", "page_view,3,2026-01-02 03:04:05", '"a,b",10,NULL']
    assert json.loads(render(result, "json")) == [
        {"type": "page_view", "n": 3, "at": "2026-01-02 03:04:05"}, {"type": "a,b", "n": 10, "at": None}]


def test_readme_sample_queries_run_and_answer(clickhouse: Service, ch_database: str) -> None:
    client = connect(clickhouse.url)
    migrate(client, ch_database)
    sink = ClickHouseSink(client, ch_database)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    steps = {"alice": ["page_view", "add_to_cart", "order_completed"], "bob": ["page_view", "add_to_cart"],
             "carol": ["page_view"]}
    events = [event(n, type_=t, user=user, received=start + dt.timedelta(seconds=n))
              for n, (user, t) in enumerate((u, t) for u, ts in steps.items() for t in ts)]
    sink.write(batch(events))
    assert counts(client, ch_database) == (6, 6)
    queries = readme_queries()
    assert len(queries) == 4

    per_hour = run_local(client, queries["events per type per hour (last day)"], ch_database)
    assert per_hour.columns == ["hour", "type", "events"]
    assert sorted((r[1], r[2]) for r in per_hour.rows) == [("add_to_cart", 2), ("order_completed", 1),
                                                          ("page_view", 3)]
    dau = run_local(client, queries["daily active users (known or anonymous), last 30 days"], ch_database)
    assert [r[1] for r in dau.rows] == [3]
    funnel = run_local(client, next(q for k, q in queries.items() if k.startswith("funnel")), ch_database)
    assert [tuple(r) for r in funnel.rows] == [(1, 1), (2, 1), (3, 1)]
    rollup = run_local(client, next(q for k, q in queries.items() if k.startswith("per-minute")), ch_database)
    assert sum(r[3] for r in rollup.rows) == 6
    sink.close()


def test_admin_query_is_read_only_and_leaves_writes_working(clickhouse: Service, ch_database: str) -> None:
    client = connect(clickhouse.url)
    migrate(client, ch_database)
    sink = ClickHouseSink(client, ch_database)
    admin = AdminServer("127.0.0.1", 0, client=client, lock=sink.lock, database=ch_database).start()
    try:
        assert run_remote(admin.url, "SELECT count() AS n FROM events").rows == [[0]]
        for statement in ("DROP TABLE events", "INSERT INTO events SELECT * FROM events",
                          "SELECT 1; DROP TABLE events", "SELECT 1 INTO OUTFILE 'x.csv'"):
            with pytest.raises(QueryError, match="read-only endpoint"):
                run_remote(admin.url, statement)
        assert run_remote(admin.url, "-- note\n/* c */ WITH 2 AS x SELECT x AS y;").rows == [[2]]
        sink.write(batch([event(i) for i in range(5)]))  # the loader's own writes still work
        assert run_remote(admin.url, "SELECT count() AS n FROM events").rows == [[5]]
        with urllib.request.urlopen(f"{admin.url}/metrics") as response:
            text = response.read().decode()
        assert "evpipe_loader_rows_total" in text and "evpipe_loader_insert_seconds" in text
    finally:
        admin.stop()
        sink.close()


def _env(url: str, database: str = "evpipe") -> dict[str, str]:
    return {**os.environ, "CLICKHOUSE_URL": url, "CLICKHOUSE_DATABASE": database, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_cli_on_a_fresh_embedded_engine(tmp_path: Path) -> None:
    out = subprocess.run(EVPIPE + ["query", "--format", "csv", "SELECT 1 AS one, 'x' AS two"], cwd=ROOT,
                         env=_env(f"chdb://{tmp_path / 'ch'}"), capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["one,two", "1,x"]
    bad = subprocess.run(EVPIPE + ["query", "SELECT nope FROM nowhere"], cwd=ROOT,
                         env=_env(f"chdb://{tmp_path / 'ch'}"), capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_cli_goes_through_the_holder_when_the_engine_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    holder = subprocess.Popen([sys.executable, "-m", "tests.loader.hold_engine", str(path), "analytics"], cwd=ROOT,
                              env=_env(""), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and endpoint_file(path).read_text().strip() == url
        # A second process cannot open the locked engine directly...
        script = ("from pathlib import Path\nfrom consumers.loader.engine import open_client\n"
                  f"open_client('chdb://{path}', Path('.'), wait_s=1)")
        probe = subprocess.run([sys.executable, "-c", script],
                               cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert probe.returncode != 0 and "EngineLocked" in probe.stderr and "one" in probe.stderr
        # A loader on the same engine waits, then gives up with a clear error.
        loader = subprocess.run(EVPIPE + ["loader"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                check=False, env=_env(f"chdb://{path}") | {"LOADER_ENGINE_WAIT_S": "1"})
        assert loader.returncode == 1 and "Is another loader running on it?" in loader.stderr
        assert "Traceback" not in loader.stderr
        # ...so `evpipe query` asks the holder.
        out = subprocess.run(EVPIPE + ["query", "--format", "json", "SELECT count() AS n FROM events"], cwd=ROOT,
                             env=_env(f"chdb://{path}", "analytics"), capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [{"n": 3}]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(60)
    assert not endpoint_file(path).exists()


def test_remote_errors_are_readable() -> None:
    from consumers.loader.query import QueryError

    with pytest.raises(QueryError, match="does not answer"):
        run_remote("http://127.0.0.1:9", "SELECT 1", timeout=2)
    assert isinstance(urllib.error.URLError("x"), OSError)

"""`evpipe query`: output formats, the sample queries in docs/, the CLI against a server; the loader's admin server."""

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
from consumers.loader.query import Result, render, run_local
from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from evpipe.local.daemon import free_port
from tests.consumers.loader.events import batch, counts, event
from tests.providers import Service

ROOT = Path(__file__).resolve().parents[3]
EVPIPE = [sys.executable, "-m", "evpipe"]


def readme_queries() -> dict[str, str]:
    """The ```sql blocks of docs/loader.md's sample queries, keyed by their first comment line."""
    text = (ROOT / "docs" / "loader.md").read_text()
    section = text.split("## Sample queries", 1)[1].split("\n## ", 1)[0]
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


def test_a_statement_without_columns_prints_no_empty_box() -> None:
    assert render(Result([], []), "table") == "OK (no result set)"
    assert render(Result(["a"], []), "table").splitlines()[-1] == "0 rows"


def test_a_query_without_rows_keeps_its_columns(clickhouse: Service, ch_database: str) -> None:
    """ClickHouse sends no column names with an empty result over HTTP; the header must still show."""
    client = connect(clickhouse.url)
    client.command(f"CREATE TABLE {ch_database}.t (a UInt8, b String) ENGINE = MergeTree ORDER BY a")
    empty = run_local(client, "SELECT a, b AS bee FROM t WHERE a > 1 -- nothing yet;", ch_database)
    assert empty == Result(["a", "bee"], [])
    assert render(empty, "table").splitlines() == ["+---+-----+", "| a | bee |", "+---+-----+", "+---+-----+",
                                                   "0 rows"]
    assert render(empty, "csv") == "a,bee"
    created = run_local(client, "CREATE TABLE t2 (a UInt8) ENGINE = MergeTree ORDER BY a;", ch_database)
    assert created.columns == [] and render(created, "table") == "OK (no result set)"
    inserted = run_local(client, "INSERT INTO t SELECT 1, 'x'", ch_database)
    assert render(inserted, "table") == "OK (no result set)"
    assert run_local(client, "SELECT a, b AS bee FROM t", ch_database) == Result(["a", "bee"], [[1, "x"]])


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


def test_admin_server_serves_metrics_and_health_only() -> None:
    admin = AdminServer("127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"{admin.url}/metrics") as response:
            assert b"# HELP" in response.read()
        with urllib.request.urlopen(f"{admin.url}/healthz") as response:
            assert response.read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(f"{admin.url}/query?sql=SELECT%201")
        assert gone.value.code == 404 and b"ClickHouse itself" in gone.value.read()
    finally:
        admin.stop()


def _env(url: str, database: str = "evpipe") -> dict[str, str]:
    return {**os.environ, "CLICKHOUSE_URL": url, "CLICKHOUSE_DATABASE": database, "PYTHONPATH": str(ROOT)}


def _query(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(EVPIPE + ["query", *args], cwd=ROOT, env=_env(url), capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.slow
def test_cli_is_a_client_of_the_server(clickhouse: Service) -> None:
    out = _query(clickhouse.url, "--format", "csv", "SELECT 1 AS one, 'x' AS two")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["one,two", "1,x"]
    bad = _query(clickhouse.url, "SELECT nope FROM nowhere")
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    empty = _query(clickhouse.url, "SELECT 1 AS one, 'x' AS two WHERE 0")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.splitlines() == ["+-----+-----+", "| one | two |", "+-----+-----+", "+-----+-----+",
                                         "0 rows"]
    down = _query(f"http://127.0.0.1:{free_port()}", "SELECT 1")
    assert down.returncode == 1 and "evpipe clickhouse serve" in down.stderr and "Traceback" not in down.stderr

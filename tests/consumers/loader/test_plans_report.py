"""`evpipe plans report`: the top violations of the last day, read from the loader's view."""

from __future__ import annotations

import os
import subprocess
import sys

from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from tests.consumers.loader.events import batch, event
from tests.providers import Service

WRONG = "/properties/plan: expected string, got integer"
MISSING = "/properties/order_id: expected a value (required), got nothing"


def report(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", "plans", "report", *args], capture_output=True,
                          text=True, timeout=60, env=os.environ | env)


def test_report_lists_the_top_violations(clickhouse: Service, ch_database: str) -> None:
    client = connect(clickhouse.url)
    migrate(client, ch_database)
    events = [event(i, type_="signup" if i < 3 else "order_completed", source="web") for i in range(5)]
    for e in events:
        e["violations"] = [WRONG] if e["type"] == "signup" else [MISSING]
    b = batch([*events, event(9)])
    sink = ClickHouseSink(client, ch_database, dead_letter=lambda *_args: None)
    sink.begin(b)
    sink.write(b)
    env = {"CLICKHOUSE_URL": clickhouse.url, "CLICKHOUSE_DATABASE": ch_database}
    done = report(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "  events  source/type          violation",
        f"       3  web/signup           {WRONG}",
        f"       2  web/order_completed  {MISSING}"]
    assert report(env, "--source", "other").stdout.strip() == "no tracking-plan violations in the last 24 h"
    assert report(env, "--limit", "1").stdout.count("\n") == 2


def test_report_without_clickhouse_is_a_clear_error(ch_database: str) -> None:
    done = report({"CLICKHOUSE_URL": "http://127.0.0.1:1", "CLICKHOUSE_DATABASE": ch_database,
                   "CLICKHOUSE_TIMEOUT_S": "2"})
    assert done.returncode == 1
    assert "could not read plan_violations_per_hour" in done.stderr and "Traceback" not in done.stderr

"""`evpipe clickhouse serve` as a process of its own: users and roles, limits, shutdown, and upgrades."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from consumers.loader.tables import migrate
from evpipe.chserver.users import authenticate, parse_users
from evpipe.clickhouse import connect
from evpipe.local.clickhouse import LocalClickHouse
from evpipe.local.daemon import free_port

ROOT = Path(__file__).resolve().parents[3]
OLD_STATE = Path(__file__).parent / "data" / "embedded-loader-state.tar.gz"
ANALYST = ("analyst", "secret")


def _serve(state: Path, **env: str) -> Iterator[LocalClickHouse]:
    server = LocalClickHouse(state, free_port())
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        server.ensure()
    finally:
        for name, value in old.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    yield server
    pid = server.daemon.pid()
    if pid:
        os.kill(pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalClickHouse]:
    yield from _serve(tmp_path / "state", CLICKHOUSE_USERS="analyst:secret:readonly",
                      CLICKHOUSE_READONLY_MAX_EXECUTION_TIME="1", CLICKHOUSE_MAX_BODY_BYTES="100000")


def _q(server: LocalClickHouse, sql: str, auth: tuple[str, str] | None = None, body: bytes | None = None,
       timeout: float = 30) -> httpx.Response:
    if body is None:
        return httpx.get(f"{server.url}/", params={"query": sql}, auth=auth, timeout=timeout)
    return httpx.post(f"{server.url}/", params={"query": sql}, content=body, auth=auth, timeout=timeout)


def test_readonly_analyst_reads_and_is_refused_writes(server: LocalClickHouse) -> None:
    assert _q(server, "CREATE TABLE default.t (a UInt32) ENGINE = MergeTree ORDER BY a").status_code == 200
    assert _q(server, "INSERT INTO default.t VALUES (1), (2)").status_code == 200
    assert _q(server, "SELECT sum(a) FROM default.t", ANALYST).text == "3\n"
    for statement in ("INSERT INTO default.t VALUES (3)", "DROP TABLE default.t", "SELECT 1 INTO OUTFILE 'x'",
                      "ALTER TABLE default.t DELETE WHERE 1", "SET max_threads = 1"):
        refused = _q(server, statement, ANALYST)
        assert refused.status_code == 403, statement
        assert refused.headers["X-ClickHouse-Exception-Code"] == "164", statement
    rows = _q(server, "INSERT INTO default.t FORMAT TSV", ANALYST, body=b"4\n")
    assert rows.headers["X-ClickHouse-Exception-Code"] == "164"
    assert _q(server, "SELECT 1", ("analyst", "wrong")).headers["X-ClickHouse-Exception-Code"] == "516"
    assert _q(server, "SELECT count() FROM default.t").text == "2\n"


def test_a_slow_analyst_query_cannot_stall_inserts_past_its_limit(server: LocalClickHouse) -> None:
    assert _q(server, "CREATE TABLE default.w (a UInt64) ENGINE = MergeTree ORDER BY a").status_code == 200
    slow: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: slow.append(
        _q(server, "SELECT count() FROM numbers(100000000000) WHERE a % 7 = 3", ANALYST)))
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    insert = _q(server, "INSERT INTO default.w SELECT number FROM numbers(1000)")
    waited = time.monotonic() - started
    thread.join(30)
    assert insert.status_code == 200, insert.text
    assert waited < 5, waited  # bounded by CLICKHOUSE_READONLY_MAX_EXECUTION_TIME (1 s here), not the query
    assert slow and slow[0].status_code != 200
    assert slow[0].headers["X-ClickHouse-Exception-Code"] in ("159", "47")  # TIMEOUT_EXCEEDED (or no column a)


def test_body_over_the_limit_is_refused(server: LocalClickHouse) -> None:
    assert _q(server, "CREATE TABLE default.b (s String) ENGINE = MergeTree ORDER BY s").status_code == 200
    response = _q(server, "INSERT INTO default.b FORMAT TSV", body=b"x" * 200_000 + b"\n")
    assert response.status_code == 413 and "CLICKHOUSE_MAX_BODY_BYTES" in response.text
    assert list((server.state_dir / "clickhouse" / "tmp").glob("*")) == []  # the spooled part is removed


def test_password_less_default_user_only_from_loopback() -> None:
    users = parse_users("analyst:secret:readonly")
    assert authenticate(users, "default", "", "127.0.0.1") is not None
    assert authenticate(users, "default", "", "::1") is not None
    assert authenticate(users, "default", "", "10.1.2.3") is None
    named = parse_users("default:pw:admin")
    assert authenticate(named, "default", "pw", "10.1.2.3") is not None
    assert authenticate(named, "default", "", "127.0.0.1") is None


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"EVPIPE_STATE_DIR": str(tmp_path), "CLICKHOUSE_HTTP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "evpipe", "clickhouse", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ping").status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(httpx.get(
        f"{url}/", params={"query": "SELECT sleepEachRow(0.5) FROM numbers(4) FORMAT Null"}, timeout=30)))
    thread.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert proc.wait(60) == 0, proc.stdout.read() if proc.stdout else ""
    assert answers and answers[0].status_code == 200
    assert b"engine closed" in (proc.stdout.read() if proc.stdout else b"")


def test_a_state_directory_of_the_embedded_loader_is_served_and_migrated(tmp_path: Path) -> None:
    """1,234 events loaded by the loader of 0.1 (engine in-process, a killed loader's stage tables left)."""
    state = tmp_path / "state"
    state.mkdir()
    with tarfile.open(OLD_STATE) as archive:
        archive.extractall(state, filter="data")
    for server in _serve(state):
        client = connect(server.url)
        before = client.query("SELECT count(), uniqExact(event_id), sum(cityHash64(event_id)) "
                              "FROM evpipe.events").result_rows[0]
        assert before[:2] == (1234, 1234)
        applied = migrate(client, "evpipe")
        # The old state predates the violations column and its view: those are added (additive), stage tables go.
        additive = ["events add column violations", "create plan_violations_per_hour"]
        assert applied[:2] == additive and applied[2:]
        assert all(step.startswith("drop _loader_stage_") for step in applied[2:])
        assert client.query("SELECT count(), uniqExact(event_id), sum(cityHash64(event_id)) "
                            "FROM evpipe.events").result_rows[0] == before
        assert client.query("SELECT sum(events) FROM evpipe.events_per_minute").result_rows[0][0] == 1234
        tables = {row[0] for row in client.query("SHOW TABLES FROM evpipe").result_rows}
        assert not [name for name in tables if name.startswith("_loader_stage_")]
        assert migrate(client, "evpipe") == []

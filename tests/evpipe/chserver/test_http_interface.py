"""`evpipe clickhouse serve` driven by unmodified ClickHouse clients: clickhouse-connect, curl, httpx, and the
official Node client (installed from npm in the test's set-up; skipped only where node is absent)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import clickhouse_connect
import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.providers import Service, unique_name

ROOT = Path(__file__).resolve().parents[3]
NODE_DIR = ROOT / ".evpipe-test" / "node-clickhouse-client"


@pytest.fixture
def client(clickhouse: Service) -> clickhouse_connect.driver.client.Client:
    """clickhouse-connect with its default settings (compression on, Native results)."""
    from urllib.parse import urlparse

    url = urlparse(clickhouse.url)
    return clickhouse_connect.get_client(host=url.hostname, port=url.port, username=url.username or "default",
                                         password=url.password or "")


@pytest.fixture
def table(client: clickhouse_connect.driver.client.Client, ch_database: str) -> str:
    name = f"{ch_database}.t"
    client.command(f"CREATE TABLE {name} (id UInt32, name String, at DateTime64(3, 'UTC'), u UUID) "
                   "ENGINE = MergeTree ORDER BY id")
    return name


def test_clickhouse_connect_session(client: clickhouse_connect.driver.client.Client, table: str) -> None:
    client.insert(table, [[1, "one", "2026-01-01 00:00:00", uuid.uuid4()]], column_names=["id", "name", "at", "u"])
    arrow = pa.table({"id": pa.array([2, 3], pa.uint32()), "name": ["two", "three"],
                      "at": pa.array([1_700_000_000_000, 1_700_000_000_001], pa.timestamp("ms", "UTC")),
                      "u": [str(uuid.uuid4()), str(uuid.uuid4())]})
    client.insert_arrow(table, arrow)
    rows = client.query(f"SELECT id, name FROM {table} WHERE id >= {{low:UInt32}} ORDER BY id",
                        parameters={"low": 2}).result_rows
    assert rows == [(2, "two"), (3, "three")]
    assert client.query_arrow(f"SELECT count() AS n FROM {table}").column("n").to_pylist() == [3]
    threads = client.query("SELECT value FROM system.settings WHERE name = 'max_threads'",
                           settings={"max_threads": 3}).result_rows
    assert threads == [("3",)]
    # A setting passed with one query does not leak into the next one.
    assert client.query("SELECT value FROM system.settings WHERE name = 'max_threads'").result_rows != [("3",)]
    with pytest.raises(DatabaseError) as error:
        client.query("SELECT * FROM no_such_table")
    assert "code: 60" in str(error.value)


def test_external_data_is_a_temporary_table_of_one_query(client: clickhouse_connect.driver.client.Client,
                                                         table: str) -> None:
    from clickhouse_connect.driver.external import ExternalData

    client.insert(table, [[i, f"n{i}", "2026-01-01 00:00:00", uuid.uuid4()] for i in range(10)],
                  column_names=["id", "name", "at", "u"])
    ids = ExternalData(data=b"2\n5\n7\n", file_name="wanted", structure="id UInt32")
    rows = client.query(f"SELECT name FROM {table} WHERE id IN (SELECT id FROM wanted) ORDER BY id",
                        external_data=ids).result_rows
    assert rows == [("n2",), ("n5",), ("n7",)]
    with pytest.raises(DatabaseError):
        client.query("SELECT * FROM wanted")  # gone after its query


def _post(url: str, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{url}/", params=params, content=body, timeout=30)


def test_curl_and_http_forms(clickhouse: Service, table: str) -> None:
    url = clickhouse.url
    assert httpx.get(f"{url}/ping").text == "Ok.\n"
    curl = subprocess.run(["curl", "-s", "--data-binary", "@-", f"{url}/"], input=b"SELECT 1", capture_output=True,
                          check=True, timeout=30)
    assert curl.stdout == b"1\n"
    assert httpx.get(f"{url}/", params={"query": "SELECT 2"}).text == "2\n"
    at, u = "2026-01-01 00:00:00.000", str(uuid.uuid4())
    bodies = {
        "JSONEachRow": json.dumps({"id": 10, "name": "json", "at": at, "u": u}).encode(),
        "CSV": f'11,"csv",{at},{u}\n'.encode(),
        "TabSeparated": f"12\ttsv\t{at}\t{u}\n".encode(),
    }
    for fmt, body in bodies.items():
        response = _post(url, body, query=f"INSERT INTO {table} FORMAT {fmt}")
        assert response.status_code == 200, response.text
    # The statement and its rows in one body, gzip-encoded on the wire.
    inline = f"INSERT INTO {table} FORMAT JSONEachRow\n".encode() + json.dumps(
        {"id": 13, "name": "inline", "at": at, "u": u}).encode()
    response = httpx.post(f"{url}/", content=gzip.compress(inline), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    for fmt in ("Parquet", "Arrow", "Native"):
        data = _post(url, b"", query=f"SELECT toUInt32(id + 100) AS id, name, at, u FROM (SELECT * FROM {table} "
                                    f"WHERE id = 10) FORMAT {fmt}")
        assert data.status_code == 200 and data.headers["X-ClickHouse-Format"] == fmt
        back = _post(url, data.content, query=f"INSERT INTO {table} FORMAT {fmt}")
        assert back.status_code == 200, back.text
    names = _post(url, f"SELECT name FROM {table} ORDER BY id FORMAT CSV".encode()).text
    assert list(csv.reader(io.StringIO(names))) == [["json"], ["csv"], ["tsv"], ["inline"], ["json"], ["json"],
                                                    ["json"]]
    typed = httpx.get(f"{url}/", params={"query": "SELECT {n:UInt8} * 2", "param_n": "21"})
    assert typed.text == "42\n"


def test_errors_look_like_clickhouse(clickhouse: Service) -> None:
    response = httpx.get(f"{clickhouse.url}/", params={"query": "SELEC 1"})
    assert response.status_code == 400
    assert response.headers["X-ClickHouse-Exception-Code"] == "62"
    assert response.text.startswith("Code: 62. DB::Exception:")
    multi = httpx.get(f"{clickhouse.url}/", params={"query": "SELECT 1; SELECT 2"})
    assert multi.status_code == 400 and "Multi-statements" in multi.text
    temp = httpx.get(f"{clickhouse.url}/", params={"query": "CREATE TEMPORARY TABLE x (a UInt8)"})
    assert temp.headers["X-ClickHouse-Exception-Code"] == "48" and "external data" in temp.text
    bad_encoding = httpx.post(f"{clickhouse.url}/", content=b"SELECT 1", headers={"Content-Encoding": "snappy"})
    assert bad_encoding.status_code == 415 and bad_encoding.text.startswith("Code: 48.")


def test_session_settings_stay_in_their_session(clickhouse: Service) -> None:
    session = {"session_id": unique_name("s")}
    query = "SELECT value FROM system.settings WHERE name = 'max_threads'"
    default = httpx.get(f"{clickhouse.url}/", params={"query": query}).text
    assert httpx.get(f"{clickhouse.url}/", params={"query": "SET max_threads = 2", **session}).status_code == 200
    assert httpx.get(f"{clickhouse.url}/", params={"query": query, **session}).text == "2\n"
    assert httpx.get(f"{clickhouse.url}/", params={"query": query}).text == default  # other requests: untouched


def test_metrics_count_statements(clickhouse: Service) -> None:
    httpx.get(f"{clickhouse.url}/", params={"query": "SELECT 1"})
    text = httpx.get(f"{clickhouse.url}/metrics").text
    assert 'evpipe_clickhouse_statements_total{kind="select",outcome="ok"}' in text
    assert "evpipe_clickhouse_request_seconds_bucket" in text


def _node_client() -> Path | None:
    """@clickhouse/client installed from npm into a test folder (once); None where node is absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    if not (NODE_DIR / "node_modules" / "@clickhouse" / "client").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
                        "@clickhouse/client@1"], check=True, capture_output=True, timeout=600)
    return NODE_DIR


NODE_SCRIPT = """
const { createClient } = require('@clickhouse/client');
(async () => {
  const client = createClient({ url: process.env.CH_URL });
  await client.command({ query: `CREATE TABLE ${process.env.TABLE} (id UInt32, name String) ENGINE = MergeTree ORDER BY id` });
  await client.insert({ table: process.env.TABLE, values: [{ id: 1, name: 'a' }, { id: 2, name: 'b' }], format: 'JSONEachRow' });
  const rows = await (await client.query({ query: `SELECT id, name FROM ${process.env.TABLE} WHERE id > {min:UInt32} ORDER BY id`,
                                          query_params: { min: 0 }, format: 'JSONEachRow' })).json();
  let code = null;
  try { await client.query({ query: 'SELECT * FROM missing_table', format: 'JSONEachRow' }); }
  catch (e) { code = e.code; }
  console.log(JSON.stringify({ rows, code, ping: (await client.ping()).success }));
  await client.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.slow
def test_official_node_client(clickhouse: Service, ch_database: str) -> None:
    folder = _node_client()
    if folder is None:
        pytest.skip("node and npm are not installed here")
    run = subprocess.run(["node", "-e", NODE_SCRIPT], cwd=folder, capture_output=True, text=True, timeout=120,
                         env=os.environ | {"CH_URL": clickhouse.url, "TABLE": f"{ch_database}.n"}, check=False)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer == {"rows": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "code": "60", "ping": True}


def test_use_in_a_session_takes_quoted_names_too(clickhouse: Service, ch_database: str) -> None:
    session = {"session_id": unique_name("s")}
    assert httpx.get(f"{clickhouse.url}/", params={"query": f"USE `{ch_database}`", **session}).status_code == 200
    assert httpx.get(f"{clickhouse.url}/", params={"query": "SELECT currentDatabase()", **session}).text == \
        f"{ch_database}\n"

"""The loader's peer: ClickHouse's Kafka table engine and a materialized view into an identical events table.

It runs inside `evpipe clickhouse serve` (chdb), in one of two modes, each a process the bench starts:

* ``attach URL DATABASE BOOTSTRAP TOPIC GROUP``: creates the tables on a running server (the one the
  loader writes to, for the timed run), holds until SIGTERM, then drops the view and the Kafka table so
  the server stops consuming.
* ``serve STATE PORT [DATABASE BOOTSTRAP TOPIC GROUP]``: `evpipe clickhouse serve`'s server in this
  process, with the engine's librdkafka settings in its configuration (the same 6 s session and
  ``fetch.queue.backoff.ms`` = 10 every consumer of the bench gets). Without tables it is the bench's
  shared server, the one the loader writes to. With them it is a server of its own for the kill test:
  the engine consumes inside the server, so a kill -9 of this process is a kill -9 of the consumer, and on
  a server of its own that leaves the loader's kill test, which runs beside it, alone.

Two quirks of chdb 4.4 (ClickHouse 26.9.2.1), seen on this bench:

* ``CREATE TABLE ... ENGINE = Kafka`` answers ``Code: 49. Shutdown was called. (LOGICAL_ERROR)``, yet the
  table is registered and consumes (found by checking ``system.tables`` and the rows, not the answer).
  The error is ignored once ``system.tables`` lists the table.
* A data directory holding a Kafka table cannot be opened again: start-up fails on that table with the same
  error. So ``serve`` removes the definitions of the Kafka table and the view before it starts and creates
  them again; the consumer group's committed offsets carry over, as on a restart of a real server.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from schemas.clickhouse import clickhouse_columns, clickhouse_create_table

QUEUE, VIEW = "kafka_queue", "kafka_mv"
# The loader's batching in this bench is 50,000 rows or 0.2 s: the engine gets the same.
ENGINE_SETTINGS = ("kafka_format = 'JSONEachRow', kafka_num_consumers = 1, kafka_max_block_size = 50000, "
                   "kafka_flush_interval_ms = 200, date_time_input_format = 'best_effort'")


def create(client: Any, database: str, bootstrap: str, topic: str, group: str) -> None:
    """The events table (the loader's DDL), the Kafka table and the view between them."""
    columns = ", ".join(f"`{name}` {ctype}" for name, ctype in clickhouse_columns())
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(clickhouse_create_table(f"`{database}`.events"))
    try:
        client.command(f"CREATE TABLE `{database}`.{QUEUE} ({columns}) ENGINE = Kafka SETTINGS "
                       f"kafka_broker_list = '{bootstrap}', kafka_topic_list = '{topic}', "
                       f"kafka_group_name = '{group}', {ENGINE_SETTINGS}")
    except Exception as exc:  # chdb 4.4's LOGICAL_ERROR (module docstring): fine once the table exists
        listed = client.query(f"SELECT count() FROM system.tables WHERE database = '{database}' "
                              f"AND name = '{QUEUE}'").result_rows[0][0]
        if not listed:
            raise RuntimeError(f"the Kafka engine table was not created: {exc}") from exc
    client.command(f"CREATE MATERIALIZED VIEW `{database}`.{VIEW} TO `{database}`.events "
                   f"AS SELECT * FROM `{database}`.{QUEUE}")


def drop(client: Any, database: str) -> None:
    client.command(f"DROP TABLE IF EXISTS `{database}`.{VIEW} SYNC")
    client.command(f"DROP TABLE IF EXISTS `{database}`.{QUEUE} SYNC")


def _attach(url: str, database: str, bootstrap: str, topic: str, group: str) -> int:
    from evpipe.clickhouse import connect

    client = connect(url)
    create(client, database, bootstrap, topic, group)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"consuming {topic} into {database}.events as group {group}", flush=True)
    stopping.wait()
    drop(client, database)
    return 0


# librdkafka settings of the Kafka engine come from the server's configuration (dots as underscores).
SERVER_CONFIG = """<clickhouse><kafka>
<session_timeout_ms>6000</session_timeout_ms><fetch_queue_backoff_ms>10</fetch_queue_backoff_ms>
</kafka></clickhouse>
"""


def _serve(state: Path, port: int, tables: list[str]) -> int:
    import chdb

    from evpipe.chserver.server import serve
    from evpipe.chserver.settings import ClickHouseServerSettings

    settings = ClickHouseServerSettings(evpipe_state_dir=state, clickhouse_http_port=port)
    config = state / "kafka-engine.xml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(SERVER_CONFIG)
    connect = chdb.connect

    def with_config(path: str) -> Any:  # the server's engine opens its data directory with this configuration
        return connect(f"{path}?config-file={config}")

    chdb.connect = with_config
    for name in (QUEUE, VIEW):  # chdb 4.4 cannot start with a Kafka table defined (module docstring)
        for path in settings.data_dir().rglob(f"{name}.sql"):
            path.unlink()
    if tables:
        threading.Thread(target=_create_when_up, args=(f"http://127.0.0.1:{port}", *tables), daemon=True).start()
    return serve(settings)


def _create_when_up(url: str, database: str, bootstrap: str, topic: str, group: str) -> None:
    from evpipe.clickhouse import connect

    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    create(connect(url), database, bootstrap, topic, group)
    print(f"consuming {topic} into {database}.events as group {group}", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["attach"] and len(argv) == 6:
        return _attach(*argv[1:])
    if argv[:1] == ["serve"] and len(argv) in (3, 7):
        return _serve(Path(argv[1]), int(argv[2]), argv[3:])
    print("usage: python -m bench.peers.kafka_engine attach URL DATABASE BOOTSTRAP TOPIC GROUP\n"
          "       python -m bench.peers.kafka_engine serve STATE PORT [DATABASE BOOTSTRAP TOPIC GROUP]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

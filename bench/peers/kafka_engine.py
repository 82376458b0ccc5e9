"""The ClickHouse Kafka engine on our `evpipe clickhouse serve` (chdb): can it consume at all?

The peer of our loader would be a Kafka-engine table read by a materialized view into an events table
identical to the loader's, on the same server process. In chdb 4.4 (ClickHouse 26.9) creating the
Kafka table fails before any connection to the broker is tried: ``Code: 49. DB::Exception: Shutdown
was called. (LOGICAL_ERROR)``, the same with an unreachable broker address. chdb runs the server-wide
``background_message_broker_schedule_pool_size`` at 0 (ClickHouse's default is 16; the Kafka engine
schedules its streaming task on that pool), and keeps it at 0 when a connection string or a config
file sets it (``system.server_settings`` then shows changed = 1, value 0). :func:`probe` runs the
same statements on every bench run, so the pair is reported as blocked only while it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.clickhouse import clickhouse_columns, clickhouse_create_table

DATABASE = "bench_peers_kafka_engine"


@dataclass(frozen=True)
class Probe:
    accepted: bool
    error: str  # the server's answer to CREATE TABLE ... ENGINE = Kafka, when it failed
    pool_size: str  # background_message_broker_schedule_pool_size as the server reports it
    version: str


def probe(clickhouse_url: str, bootstrap: str, topic: str) -> Probe:
    """Create the events table, then the Kafka-engine table the materialized view would read; drop both."""
    from evpipe.clickhouse import connect

    client = connect(clickhouse_url)
    columns = ", ".join(f"`{name}` {ctype}" for name, ctype in clickhouse_columns())
    version = str(client.query("SELECT version()").result_rows[0][0])
    pool = client.query("SELECT value FROM system.server_settings "
                        "WHERE name = 'background_message_broker_schedule_pool_size'").result_rows
    error = ""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    try:
        client.command(clickhouse_create_table(f"{DATABASE}.events"))
        client.command(
            f"CREATE TABLE {DATABASE}.queue ({columns}) ENGINE = Kafka SETTINGS kafka_broker_list = '{bootstrap}', "
            f"kafka_topic_list = '{topic}', kafka_group_name = 'bench_peers_kafka_engine', "
            "kafka_format = 'JSONEachRow', kafka_num_consumers = 1, kafka_max_block_size = 50000, "
            "kafka_flush_interval_ms = 200")
    except Exception as exc:  # noqa: BLE001 (the server's answer is the finding)
        error = " ".join(str(exc).split())
        if "server response: " in error:
            error = error.split("server response: ", 1)[1].split(" (for url")[0]
    finally:
        try:
            client.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
        except Exception as exc:  # noqa: BLE001 (a table whose start failed may not drop; reported)
            print(f"note: could not drop {DATABASE}: {exc}", flush=True)
    return Probe(not error, error, str(pool[0][0]) if pool else "(not reported)", version)

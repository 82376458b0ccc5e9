"""Test helper process: hold an embedded engine like a running loader does, serving /query.

Usage: python -m tests.loader.hold_engine CHDB_PATH DATABASE. Loads three events,
prints the admin URL, and runs until stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from consumers.loader.admin import AdminServer
from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from tests.loader.events import batch, event


def main() -> None:
    path, database = Path(sys.argv[1]), sys.argv[2]
    client = connect(f"chdb://{path}")
    migrate(client, database)
    sink = ClickHouseSink(client, database)
    sink.write(batch([event(i) for i in range(3)]))
    admin = AdminServer("127.0.0.1", 0, client=client, lock=sink.lock, database=database, data_path=path).start()
    print(admin.url, flush=True)
    sys.stdin.read()
    admin.stop()


if __name__ == "__main__":
    main()

"""Run ClickHouse statements in a process of their own: `python -m tests.replay.chsql SQL...`.

The embedded engine allows one data directory per process, and the test process
must not hold the one its loader and replay subprocesses use.
"""

from __future__ import annotations

import os
import sys

from evpipe.clickhouse import connect


def main(statements: list[str]) -> None:
    client = connect(os.environ["CLICKHOUSE_URL"])
    client.database = os.environ["CLICKHOUSE_DATABASE"]
    for statement in statements:
        client.command(statement)


if __name__ == "__main__":
    main(sys.argv[1:])

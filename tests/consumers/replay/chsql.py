"""Run ClickHouse statements from the command line: `python -m tests.consumers.replay.chsql SQL...` (CLICKHOUSE_URL and
CLICKHOUSE_DATABASE from the environment), as an operator's drill would."""

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

"""`evpipe plans report`: the most frequent tracking-plan violations of tagged events, from ClickHouse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True)
class Row:
    source_id: str
    type: str
    violation: str
    events: int


def top_violations(client: Client, database: str, hours: int, limit: int, source: str | None) -> list[Row]:
    """Read from the loader's view plan_violations_per_hour (so the query is the one analysts see)."""
    parameters: dict[str, Any] = {"hours": hours, "limit": limit, "source": source or ""}
    result = client.query(
        f"SELECT source_id, type, violation, sum(events) AS n FROM `{database}`.plan_violations_per_hour "
        "WHERE hour >= toStartOfHour(now() - toIntervalHour({hours:UInt32})) "
        "AND ({source:String} = '' OR source_id = {source:String}) "
        "GROUP BY source_id, type, violation ORDER BY n DESC, source_id, type, violation LIMIT {limit:UInt32}",
        parameters=parameters)
    return [Row(str(s), str(t), str(v), int(n)) for s, t, v, n in result.result_rows]


def render(rows: list[Row], hours: int) -> str:
    if not rows:
        return f"no tracking-plan violations in the last {hours} h"
    width = max(len(f"{r.source_id}/{r.type}") for r in rows)
    lines = [f"{'events':>8}  {'source/type':<{width}}  violation"]
    lines += [f"{r.events:>8}  {f'{r.source_id}/{r.type}':<{width}}  {r.violation}" for r in rows]
    return "\n".join(lines)

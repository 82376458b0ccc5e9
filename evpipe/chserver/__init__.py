"""`evpipe clickhouse serve`: the embedded ClickHouse engine as a server speaking ClickHouse's HTTP interface."""

"""ClickHouse's HTTP interface conventions: which URL parameters are settings, error answers, headers.

An error is answered the way a ClickHouse server answers it: a non-2xx status,
the ``X-ClickHouse-Exception-Code`` header, and a ``Code: N. DB::Exception: ...``
body, which is what clickhouse-connect, the Node client and curl users parse.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from starlette.responses import Response

# URL parameters that steer the HTTP request itself; every other one (but param_* and external
# data's <name>_structure/_types/_format) is a setting for the statement, as on a ClickHouse server.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "user", "password", "quota_key", "buffer_size", "wait_end_of_query",
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "client_protocol_version", "role", "http_response_buffer_size",
    "http_wait_end_of_query", "output_format_json_quote_64bit_integers_ignored",
})
EXTERNAL_SUFFIXES = ("_structure", "_types", "_format")

# ClickHouse error code -> HTTP status, as its HTTP handler maps them (anything else is 500).
_STATUS_BY_CODE = {
    516: 403, 192: 403, 194: 403, 195: 403, 497: 403, 164: 403,  # authentication / access / readonly
    60: 404, 81: 404, 36: 400, 62: 400, 27: 400, 26: 400, 6: 400, 38: 400, 41: 400, 53: 400, 70: 400,
    115: 400, 117: 400, 47: 400, 46: 400, 43: 400, 44: 400, 48: 501, 73: 400,
    159: 500, 394: 500, 241: 500, 210: 503, 202: 503,
}
READONLY_CODE, MULTI_STATEMENT_CODE, NOT_IMPLEMENTED_CODE, AUTH_CODE = 164, 62, 48, 516


class ServerError(Exception):
    """An answer in ClickHouse's error form."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def response(self, query_id: str) -> Response:
        text = self.message if self.message.startswith("Code: ") else f"Code: {self.code}. DB::Exception: {self.message}"
        headers = {"X-ClickHouse-Exception-Code": str(self.code), "X-ClickHouse-Query-Id": query_id}
        return Response(text.rstrip("\n") + "\n", self.status or status_for(self.code), headers,
                        media_type="text/plain; charset=UTF-8")


def status_for(code: int) -> int:
    return _STATUS_BY_CODE.get(code, 500)


@dataclass
class Params:
    """A request's URL parameters sorted by what they steer."""

    transport: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)  # param_x -> x
    external: dict[str, str] = field(default_factory=dict)  # ids_structure, ids_format, ...


def split_params(params: Mapping[str, str], external_names: frozenset[str] = frozenset()) -> Params:
    out = Params()
    for name, value in params.items():
        if name in TRANSPORT_PARAMS:
            out.transport[name] = value
        elif name.startswith("param_"):
            out.query_params[name[6:]] = value
        elif any(name.endswith(s) and name[: -len(s)] in external_names for s in EXTERNAL_SUFFIXES):
            out.external[name] = value
        else:
            out.settings[name] = value
    return out


CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8", "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8", "CSVWithNames": "text/csv; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8", "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8", "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
}


def content_type(fmt: str) -> str:
    if fmt in CONTENT_TYPES:
        return CONTENT_TYPES[fmt]
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    return "text/plain; charset=UTF-8" if fmt.startswith(("Pretty", "Vertical", "Markdown")) \
        else "application/octet-stream"


def summary_header(rows_read: int, bytes_read: int, rows_written: int, bytes_written: int,
                   result_rows: int, result_bytes: int, elapsed_s: float) -> str:
    return orjson.dumps({
        "read_rows": str(rows_read), "read_bytes": str(bytes_read), "written_rows": str(rows_written),
        "written_bytes": str(bytes_written), "total_rows_to_read": str(rows_read),
        "result_rows": str(result_rows), "result_bytes": str(result_bytes),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }).decode()


def compress_response(data: bytes, accept_encoding: str, enabled: bool) -> tuple[bytes, str | None]:
    """The body in the client's preferred encoding we support, when the client enabled HTTP compression."""
    if not enabled or not data:
        return data, None
    offered = [part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(",")]
    for encoding in offered:
        if encoding == "gzip":
            return gzip.compress(data, compresslevel=3), "gzip"
        if encoding == "deflate":
            return zlib.compress(data, 3), "deflate"
        if encoding == "zstd":
            import zstandard

            return zstandard.ZstdCompressor(level=3).compress(data), "zstd"
        if encoding == "lz4":
            import lz4.frame

            return lz4.frame.compress(data), "lz4"
    return data, None

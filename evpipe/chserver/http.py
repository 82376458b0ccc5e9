"""The HTTP interface: ``/`` (GET and POST queries and inserts), ``/ping``, ``/metrics``.

A request becomes one statement for the engine:

* the query comes from the ``query`` URL parameter, the body, or both (the
  parameter first, then the body, as ClickHouse joins them);
* an ``INSERT ... FORMAT <name>`` whose rows follow (in the body, or the whole
  body after a ``query`` parameter) is run as ``INSERT ... FROM INFILE`` on the
  spooled rows, so any input format the engine reads is accepted;
* other URL parameters are settings, ``param_<name>`` are query parameters,
  and multipart files are external data (temporary tables for the statement).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from evpipe.chserver import sqltext
from evpipe.chserver.body import HEAD_BYTES, Spooled, removed_after, spool, tail_copy
from evpipe.chserver.engine import Engine, EngineError, TempTable
from evpipe.chserver.metrics import ServerMetrics
from evpipe.chserver.protocol import (
    AUTH_CODE,
    MULTI_STATEMENT_CODE,
    NOT_IMPLEMENTED_CODE,
    READONLY_CODE,
    Params,
    ServerError,
    compress_response,
    content_type,
    split_params,
    summary_header,
)
from evpipe.chserver.sessions import Sessions
from evpipe.chserver.users import User, authenticate, credentials

log = logging.getLogger("evpipe.clickhouse")
DISPLAY_NAME = socket.gethostname()


@dataclass
class Statement:
    sql: str
    fmt: str
    data: Path | None = None  # rows of an INSERT, read with FROM INFILE
    temp_tables: list[TempTable] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # to remove after the request


class HttpInterface:
    def __init__(self, engine: Engine, users: dict[str, User], metrics: ServerMetrics, tmp_dir: Path,
                 max_body_bytes: int, readonly_max_execution_time: float) -> None:
        self.engine = engine
        self.users = users
        self.metrics = metrics
        self.tmp_dir = tmp_dir
        self.max_body_bytes = max_body_bytes
        self.readonly_limit = readonly_max_execution_time
        self.sessions = Sessions()

    async def ping(self, request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def query(self, request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        started = time.perf_counter()
        statement: Statement | None = None
        try:
            user = self._user(request)
            statement, params = await self._statement(request)
            with removed_after(statement.data, *statement.files):
                response = await self._execute(request, user, statement, params, query_id)
        except ServerError as exc:
            self.metrics.observe(_kind(statement), exc.code, time.perf_counter() - started)
            return exc.response(query_id)
        except EngineError as exc:
            self.metrics.observe(_kind(statement), exc.code, time.perf_counter() - started)
            return ServerError(exc.code, exc.message).response(query_id)
        except Exception as exc:  # a bug of this server: still a coded answer, with the reason
            log.exception("unexpected error answering a request")
            self.metrics.observe(_kind(statement), 1002, time.perf_counter() - started)
            return ServerError(1002, f"internal error of evpipe clickhouse serve: {type(exc).__name__}: {exc}. "
                                     "(UNKNOWN_EXCEPTION)").response(query_id)
        self.metrics.observe(_kind(statement), 0, time.perf_counter() - started)
        return response

    # -- building the statement -------------------------------------------------------------------------

    def _user(self, request: Request) -> User:
        name, password = credentials(request.headers, request.query_params)
        user = authenticate(self.users, name, password, request.client.host if request.client else None)
        if user is None:
            raise ServerError(AUTH_CODE, f"{name}: Authentication failed: password is incorrect, or there is "
                                         "no user with such name, or the password-less default user was used "
                                         "from another host (set CLICKHOUSE_USERS). (AUTHENTICATION_FAILED)")
        return user

    async def _statement(self, request: Request) -> tuple[Statement, Params]:
        url_query = request.query_params.get("query", "")
        if request.method == "POST" and request.headers.get("content-type", "").startswith("multipart/form-data"):
            return await self._multipart(request, url_query)
        params = split_params(request.query_params)
        fmt = params.transport.get("default_format", "TabSeparated")
        if request.method != "POST":
            return Statement(url_query, fmt), params
        body = await spool(_stream(request), request.headers.get("content-encoding"), self.tmp_dir,
                           self.max_body_bytes)
        return _with_body(url_query, body, fmt), params

    async def _multipart(self, request: Request, url_query: str) -> tuple[Statement, Params]:
        form = await request.form(max_files=100, max_fields=1000)
        names = frozenset(key for key, value in form.multi_items() if isinstance(value, UploadFile))
        params = split_params(request.query_params, names)
        statement = Statement(str(form.get("query") or url_query),
                              params.transport.get("default_format", "TabSeparated"))
        for name in sorted(names):
            upload = form[name]
            assert isinstance(upload, UploadFile)
            path = await _save(upload, self.tmp_dir)
            statement.files.append(path)
            statement.temp_tables.append(TempTable(name, _structure(params, name), params.external.get(
                f"{name}_format", "TabSeparated"), path))
        await form.close()
        return statement, params

    # -- running it ---------------------------------------------------------------------------------------

    async def _execute(self, request: Request, user: User, statement: Statement, params: Params,
                       query_id: str) -> Response:
        sql = statement.sql
        if not sqltext.tokens(sql):
            raise ServerError(62, "Empty query. (SYNTAX_ERROR)", 400)
        if sqltext.statement_count(sql) > 1:
            raise ServerError(MULTI_STATEMENT_CODE, "Multi-statements are not allowed. (SYNTAX_ERROR)", 400)
        kind = sqltext.kind(sql)
        if user.readonly and (statement.data is not None or not sqltext.is_read_only(sql)):
            raise ServerError(READONLY_CODE, f"{user.name}: Cannot execute query in readonly mode: only SELECT, "
                                             "SHOW, DESCRIBE and EXPLAIN are allowed. (READONLY)")
        session = self.sessions.get(params.transport.get("session_id"), params.transport.get("session_timeout"))
        if kind in ("SET", "USE") and statement.data is None:
            return self._session_statement(kind, sql, session, query_id)
        if kind == "CREATE" and sqltext.is_temporary(sql):
            raise ServerError(NOT_IMPLEMENTED_CODE, "temporary tables are not supported by this server: use a "
                                                    "table in a database, or external data. (NOT_IMPLEMENTED)")
        settings = {**(session.settings if session else {}), **params.settings}
        if user.readonly:
            limit = min(float(settings.get("max_execution_time") or self.readonly_limit), self.readonly_limit)
            settings["max_execution_time"] = f"{limit:g}"
        database = params.transport.get("database") or (session.database if session else None)
        run_sql = sqltext.from_infile(sql, statement.data) if statement.data is not None else sql
        result = await asyncio.to_thread(self.engine.run, run_sql, statement.fmt, params.query_params, settings,
                                         database, tuple(statement.temp_tables))
        self.metrics.rows(result.rows_read, result.rows_written)
        fmt = sqltext.output_format(sql) or statement.fmt
        body, encoding = compress_response(result.data, request.headers.get("accept-encoding", ""),
                                           params.transport.get("enable_http_compression") == "1")
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                   "X-ClickHouse-Server-Display-Name": DISPLAY_NAME,
                   "X-ClickHouse-Summary": summary_header(result.rows_read, result.bytes_read, result.rows_written,
                                                          result.bytes_written, 0, len(result.data),
                                                          result.elapsed_s)}
        if encoding:
            headers["Content-Encoding"] = encoding
        return Response(body, 200, headers, media_type=content_type(fmt))

    def _session_statement(self, kind: str, sql: str, session: object, query_id: str) -> Response:
        """SET and USE change the request's session (nothing without one), never the shared engine."""
        if session is not None:
            self.sessions.apply(session, kind, sql)
        return Response(b"", 200, {"X-ClickHouse-Query-Id": query_id})


def _with_body(url_query: str, body: Spooled, fmt: str) -> Statement:
    """The statement a POST makes: an INSERT's rows (from the body) kept apart from its text."""
    if url_query:
        if sqltext.insert_with_data(url_query) is not None:
            return Statement(url_query, fmt, data=body.path)
        if body.size > HEAD_BYTES:
            raise ServerError(62, "a query split between the URL and a body over 64 KiB must be an INSERT with "
                                  "FORMAT whose rows are the body. (SYNTAX_ERROR)", 400)
        removed = body.head.decode("utf-8", "replace")
        body.path.unlink(missing_ok=True)
        return Statement(f"{url_query}\n{removed}" if removed else url_query, fmt)
    text = body.head.decode("latin-1")
    insert = sqltext.insert_with_data(text)
    if insert is None:
        if body.size > HEAD_BYTES:
            raise ServerError(62, "a query over 64 KiB must be an INSERT with FORMAT whose rows follow it. "
                                  "(SYNTAX_ERROR)", 400)
        body.path.unlink(missing_ok=True)
        return Statement(body.head.decode("utf-8", "replace"), fmt)
    data = tail_copy(body, insert.data_start)
    body.path.unlink(missing_ok=True)
    return Statement(insert.statement.encode("latin-1").decode("utf-8", "replace"), fmt, data=data)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _save(upload: UploadFile, directory: Path) -> Path:
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(prefix="external-", dir=directory, delete=False)  # noqa: SIM115
    with handle:
        while block := await upload.read(1 << 20):
            handle.write(block)
    return Path(handle.name)


def _structure(params: Params, name: str) -> str:
    if f"{name}_structure" in params.external:
        return params.external[f"{name}_structure"]
    if f"{name}_types" in params.external:
        types = [t.strip() for t in params.external[f"{name}_types"].split(",")]
        return ", ".join(f"_{i + 1} {t}" for i, t in enumerate(types))
    raise ServerError(36, f"external table {name!r} needs {name}_structure or {name}_types. (BAD_ARGUMENTS)", 400)


def _kind(statement: Statement | None) -> str:
    if statement is None:
        return "other"
    if statement.data is not None:
        return "insert"
    kind = sqltext.kind(statement.sql)
    return {"SELECT": "select", "WITH": "select", "INSERT": "insert"}.get(kind, "other")


def create_app(interface: HttpInterface, lifespan: object = None) -> Starlette:
    routes = [
        Route("/", interface.query, methods=["GET", "POST"]),
        Route("/ping", interface.ping, methods=["GET", "HEAD"]),
        Route("/metrics", interface.metrics_endpoint, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)  # type: ignore[arg-type]

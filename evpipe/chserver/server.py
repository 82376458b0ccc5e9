"""Run the HTTP interface under uvicorn; the engine is opened at start and closed cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from evpipe.chserver.engine import Engine
from evpipe.chserver.http import HttpInterface, create_app
from evpipe.chserver.metrics import ServerMetrics
from evpipe.chserver.settings import ClickHouseServerSettings
from evpipe.chserver.users import UsersError, parse_users
from evpipe.settings import ConfigError

log = logging.getLogger("evpipe.clickhouse")


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A SIGTERM is the normal way to stop: in-flight requests finish, the engine closes, exit 0
        # (uvicorn would re-raise the signal after shutting down).
        self._captured_signals.clear()


def serve(settings: ClickHouseServerSettings) -> int:
    try:
        users = parse_users(settings.clickhouse_users)
    except UsersError as exc:
        raise ConfigError(str(exc)) from None
    data_dir, tmp_dir = settings.data_dir(), settings.tmp_dir()
    shutil.rmtree(tmp_dir, ignore_errors=True)  # bodies spooled by a process that was killed
    engine = Engine(data_dir)
    log.info("ClickHouse engine %s at %s, HTTP interface on %s:%d", engine.version(), data_dir,
             settings.clickhouse_http_host, settings.clickhouse_http_port)
    interface = HttpInterface(engine, users, ServerMetrics(), tmp_dir, settings.clickhouse_max_body_bytes,
                              settings.clickhouse_readonly_max_execution_time)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.close()
            log.info("engine closed")

    config = uvicorn.Config(create_app(interface, lifespan), host=settings.clickhouse_http_host,
                            port=settings.clickhouse_http_port, lifespan="on", access_log=False,
                            log_level="warning", timeout_graceful_shutdown=60)
    _Server(config).run()
    return 0

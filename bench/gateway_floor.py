"""The floor under any one-worker gateway: HTTP in, durable produce out, and nothing between.

``python -m bench.gateway_floor`` serves one route under the gateway's own
uvicorn configuration (uvloop, httptools) and answers each POST by producing
the same 100 pre-encoded events through the gateway's own Kafka backend
(acks=all, idempotence, the response waits for every delivery report). It
reads the body but neither parses nor validates it: whatever a real gateway
does per event comes on top of this, so its events/s bounds the gateway's
batch path on this machine. The gateway bench runs it under the same wrk load.

Configuration: the gateway's environment (KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC,
GATEWAY_PORT, ...).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from gateway.backends.base import Record
from gateway.backends.kafka import KafkaBackend
from gateway.settings import GatewaySettings
from schemas.envelope import Enrichment, EventValidator, now_timestamp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
BATCH = 100


def prepared_records(count: int = BATCH) -> list[Record]:
    """The bench's events, validated and encoded once, as the gateway would produce them."""
    from bench.gateway import _event

    validator = EventValidator()
    enrichment = Enrichment("bench", now_timestamp(), "127.0.0.1", "bench")
    return [Record(*validator.encode(_event(n), enrichment)) for n in range(count)]


class FloorApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.backend = KafkaBackend(settings)
        self.records = prepared_records()
        self.deadline = settings.gateway_deadline_s
        self.answer = f'{{"accepted":{BATCH},"rejected":[]}}'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        more = True
        while more:  # read the whole body, as the gateway does
            message = await receive()
            more = message.get("more_body", False)
        await self.backend.send(self.records, [], self.deadline)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.answer})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.backend.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.backend.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m bench.gateway_floor",
        description="Serve HTTP -> durable Kafka produce with no parsing or validation (the gateway's floor). "
                    "Configured by the gateway's environment variables.",
    ).parse_args(argv)
    settings = GatewaySettings()
    started = time.monotonic()
    app = FloorApp(settings)
    print(f"floor app ready in {time.monotonic() - started:.1f}s on port {settings.gateway_port}", flush=True)
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port, loop="uvloop", http="httptools",
                lifespan="on", access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`evpipe fallback status|drain`: what the fallback store holds, and re-producing it to Kafka by hand.

Every gateway drains in the background while Kafka is ready; this command is for
a store no gateway drains (GATEWAY_FALLBACK_DRAIN_INTERVAL_S=0, or all gateways
gone). It claims objects as the gateways do, so it can run next to them.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from evpipe.settings import describe
from gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from gateway.fallback.store import FallbackStore

DESCRIPTION = """\
status: the pending objects and events of the fallback store (GATEWAY_FALLBACK_URI) and the oldest one's age.
drain:  re-produce the stored events to Kafka, oldest first; an object is deleted only after every event in
        it is acknowledged. Ends when nothing is left that this drainer can take (another drainer's claims are
        left to it), or runs on with --follow."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "fallback", help="the gateway's fallback store for broker outages: status, drain",
        description=DESCRIPTION, epilog=describe(GatewaySettings), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("status", help="pending objects and events, oldest age").set_defaults(func=status)
    drain = actions.add_parser("drain", help="re-produce stored events to Kafka, deleting each object once acked")
    drain.add_argument("--follow", action="store_true", help="keep draining as new objects arrive")
    drain.add_argument("--interval", type=float, default=5.0, help="seconds between passes with --follow")
    drain.set_defaults(func=drain_command)


def _open() -> tuple[GatewaySettings, FallbackStore]:
    from evpipe.settings import ConfigError, load
    from gateway.fallback.store import fallback_uri, open_store

    settings = load(GatewaySettings)
    uri = fallback_uri(settings.gateway_fallback_uri, settings.evpipe_state_dir)
    if uri is None:
        raise ConfigError("GATEWAY_FALLBACK_URI is empty: the fallback is off, there is nothing to drain")
    return settings, open_store(uri, settings.s3_endpoint_url, settings.gateway_fallback_timeout_s)


def status(args: argparse.Namespace) -> int:
    _, store = _open()
    pending = store.pending()
    oldest = f", oldest written {time.time() - pending[0].written_at:.0f}s ago" if pending else ""
    print(f"{store.uri}: {len(pending)} objects, {sum(p.events for p in pending)} events pending{oldest}")
    return 0


def drain_command(args: argparse.Namespace) -> int:
    import asyncio

    from evpipe.observability.logs import configure_process

    settings, store = _open()
    configure_process(settings.gateway_log_level, settings.evpipe_log_format)
    return asyncio.run(_drain(settings, store, args.follow, args.interval))


async def _drain(settings: GatewaySettings, store: FallbackStore, follow: bool, interval: float) -> int:
    import asyncio
    import uuid

    from prometheus_client import CollectorRegistry

    from gateway.backends.kafka import KafkaBackend
    from gateway.fallback.drain import Drainer
    from gateway.metrics import FallbackMetrics

    backend = KafkaBackend(settings)
    await backend.start()
    drainer = Drainer(store, backend, FallbackMetrics(CollectorRegistry()), f"cli{uuid.uuid4().hex[:9]}",
                      settings.gateway_fallback_lease_s)
    total_events = total_objects = 0
    try:
        while True:
            report = await drainer.drain_pass(backend.ready)
            total_events, total_objects = total_events + report.events, total_objects + report.objects
            if report.stopped:
                print(f"stopped: {report.stopped}")
            if not follow and (report.objects == 0 or report.stopped):
                break
            if report.objects == 0:
                await asyncio.sleep(interval)
    finally:
        await backend.close()
    left = store.pending()
    print(f"drained {total_events} events in {total_objects} objects; {len(left)} objects "
          f"({sum(p.events for p in left)} events) left in {store.uri}")
    return 1 if report.stopped else 0

"""`evpipe worker`: drain the gateway's Redis list into Postgres (stage 2)."""

from __future__ import annotations

import argparse

from consumers.worker.settings import WorkerSettings
from evpipe.settings import describe, load, redact_url

DESCRIPTION = """\
Take wire-format events from the Redis list REDIS_QUEUE_KEY (filled by the gateway's redis backend) and
bulk-insert them into Postgres with COPY, idempotently by event_id. Events move atomically into this
worker's processing list and leave it only after the Postgres transaction committed, so a crash or kill
loses nothing; workers re-queue the in-flight events of workers whose heartbeat expired. Run any number.

Creates the events table (partitioned by day), its partitions ahead and the event_id ledger at start.
Events Postgres keeps rejecting go to the list REDIS_QUEUE_KEY:dead with the error. Scale on
evpipe_worker_queue_depth (add a worker while it stays above ~500). SIGTERM finishes the current batch."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "worker", help="stage 2: drain the Redis list into Postgres (COPY, idempotent, crash-safe)",
        description=DESCRIPTION, epilog=describe(WorkerSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import redis

    from consumers.runtime.metrics import process_registry, serve
    from consumers.runtime.process import run_until_signalled
    from consumers.worker.metrics import WorkerMetrics
    from consumers.worker.worker import Worker
    from evpipe.observability.logs import configure_process

    settings = load(WorkerSettings)
    configure_process(args.log_level, settings.evpipe_log_format)
    registry = process_registry()  # one per process, like every consumer's
    worker = Worker(settings, WorkerMetrics(registry))
    serve(registry, settings.worker_metrics_port, setting="WORKER_METRICS_PORT")
    try:
        run_until_signalled(worker)  # SIGTERM/SIGINT: finish the batches in flight, acknowledge, exit
    except redis.ConnectionError as exc:
        print(f"error: cannot reach Redis at {redact_url(settings.redis_url)}: {exc}\n"
              "Is Redis running? Set REDIS_URL to its address.")
        return 1
    return worker.exit_code if worker.exit_code is not None else 1

"""The `evpipe` command: one entry point, a subcommand per capability.

Each subcommand lives in its own module exposing ``register(subparsers)``;
that module must stay cheap to import (argparse and settings only), importing
heavy clients inside the command's function so `evpipe --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from evpipe import __version__

# (module, what it provides). A module that is not part of this checkout is skipped,
# so `evpipe --help` lists exactly the subcommands that exist.
COMMAND_MODULES: tuple[str, ...] = (
    "evpipe.commands.dev",
    "evpipe.commands.topics",
    "evpipe.commands.tail",
    "evpipe.commands.plans",
    "evpipe.chserver.cli",
    "gateway.cli",
    "gateway.fallback.cli",
    "consumers.worker.cli",
    "consumers.archiver.cli",
    "consumers.loader.cli",
    "consumers.replay.cli",
    "consumers.loader.query_cli",
    "consumers.replay.deadletter_cli",
    "consumers.privacy.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evpipe",
        description="Event-ingestion pipeline: HTTP gateway -> Kafka -> Parquet archive + ClickHouse "
        "(or Redis/Postgres for small deployments).",
        epilog="Run `evpipe COMMAND --help` for a command's options and environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"evpipe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that capability is not in this checkout
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

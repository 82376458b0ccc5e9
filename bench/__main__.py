"""`python -m bench NAME [--quick]`: run one benchmark, or all of them with no NAME.

A benchmark is a module ``bench/<name>.py`` exposing ``run(quick: bool) -> dict``;
it measures its raw baseline in the same run and calls ``bench.report.write_result``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("gateway", "worker", "archiver", "loader", "replay", "e2e", "step")


def available() -> list[str]:
    names = []
    for name in BENCHMARKS:
        try:
            importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                continue
            raise
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks, each against a raw baseline measured in the same run. "
        "Results go to bench/results/NAME.json.",
    )
    parser.add_argument("name", nargs="?", choices=available(), help="benchmark to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="short run, for CI and smoke checks")
    args = parser.parse_args(argv)
    failed = []
    for name in [args.name] if args.name else available():
        print(f"==> bench {name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception as exc:  # one failing benchmark must not hide the others' results
            print(f"bench {name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

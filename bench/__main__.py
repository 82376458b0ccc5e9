"""`python -m bench NAME [--quick]`: run one benchmark, or all of them with no NAME.

A benchmark is a module ``bench/<name>.py`` exposing ``run(quick: bool) -> dict``;
it measures its raw baseline in the same run and calls ``bench.report.write_result``.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

BENCHMARKS = ("gateway", "plans", "worker", "archiver", "loader", "replay", "e2e", "step", "recovery", "peers",
              "privacy", "overflow", "scale", "pump")


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
    if args.name:
        print(f"==> bench {args.name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            importlib.import_module(f"bench.{args.name}").run(quick=args.quick)
        except RuntimeError as exc:  # a missing tool or a failed check: the message says which
            print(f"error: bench {args.name}: {exc}", file=sys.stderr)
            return 1
        return 0
    # All of them: each in its own process, because the embedded ClickHouse engine
    # allows one data path per process, and one failure must not hide the others.
    failed = []
    for name in available():
        argv = [sys.executable, "-m", "bench", name] + (["--quick"] if args.quick else [])
        if subprocess.run(argv, check=False).returncode != 0:
            print(f"bench {name} failed", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The peers bench stays runnable: registered, its peers' software checked, its counting right (no broker here)."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench.peers import env
from bench.peers.measure import COLUMNS, CpuMeter, Killed, row
from bench.peers.noop_ours import NoopSink, offsets_only
from bench.peers.systems import ArroyoNoop, Audit, Context, OurLoader, OurNoop
from consumers.runtime import Batch


def context(tmp_path: Path) -> Context:
    return Context("127.0.0.1:1", "t", 2, 10, tmp_path, broker_pid=1)


def test_peers_is_a_benchmark_with_a_quick_form() -> None:
    assert "peers" in bench_main.available()
    import bench.peers

    assert list(__import__("inspect").signature(bench.peers.run).parameters)[:1] == ["quick"]


def test_missing_arroyo_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[test,bench,peers\]"'):
        env.require_arroyo()


def test_the_quix_child_imports_nothing_of_ours() -> None:
    """It runs on Quix Streams' own interpreter, where evpipe is not installed."""
    source = Path(env.__file__).with_name("quix_parquet.py").read_text()
    modules = {n.module or "" for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    assert not {m.split(".")[0] for m in modules} & {"evpipe", "bench", "consumers", "schemas", "gateway"}


def test_noop_sink_rewrites_a_batch_in_place_and_remembers_its_end(tmp_path: Path) -> None:
    sink = NoopSink(tmp_path / "record")
    parsed = offsets_only([5, 6, 7], [b"a", b"b", b"c"])
    batch = Batch("t", 1, 5, 7, parsed.table, 3, parsed.offsets)
    assert sink.pending_end("t", 1, 5) is None
    for _ in range(2):  # written, killed before the commit, re-formed and written again
        sink.begin(batch)
        sink.write(batch)
    assert sink.pending_end("t", 1, 5) == 7
    system = OurNoop(context(tmp_path))
    system.dir = tmp_path
    assert system.audit() == Audit(rows=3, distinct=3, rewrites=1)


def test_arroyo_offsets_processed_twice_are_duplicates(tmp_path: Path) -> None:
    system = ArroyoNoop(context(tmp_path))
    system.dir = tmp_path
    (tmp_path / "record.txt").write_text("0 0\n0 1\n1 0\n0 0\n0 1\n")
    assert system.audit() == Audit(rows=5, distinct=3)


def test_cpu_is_read_between_samples() -> None:
    meter = CpuMeter([])
    meter.times, meter.totals = [10.0, 11.0, 12.0], [1.0, 2.0, 4.0]
    assert meter.at(11.5) == pytest.approx(3.0)
    assert meter.at(5.0) == 1.0 and meter.at(20.0) == 4.0


def test_rows_have_every_column_in_order(tmp_path: Path) -> None:
    killed = Killed(5, 4, missing=0, duplicates=0, audit=Audit(10, 10))
    out = row(OurLoader(context(tmp_path)), None, killed, lead=None)
    assert tuple(out) == COLUMNS
    assert out["kills"] == "4/5" and out["system"] == "evpipe loader"

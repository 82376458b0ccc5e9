"""A deletion recorded by the admin routes (pending) is carried out by `evpipe privacy run`; list and status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evpipe.privacy.clickhouse import ClickHousePrivacyStore
from evpipe.privacy.request import Ledger
from evpipe.privacy.subjects import Subject
from tests.providers import Service

ROOT = Path(__file__).resolve().parents[2]


def _evpipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", "privacy", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_run_carries_out_pending_requests(clickhouse: Service, ch_database: str, tmp_path: Path) -> None:
    from consumers.loader.tables import migrate
    from evpipe.clickhouse import connect

    migrate(connect(clickhouse.url), ch_database)
    store = ClickHousePrivacyStore(clickhouse.url, ch_database)
    store.ensure()
    ledger = Ledger(store)
    pending = ledger.open("delete", Subject("anonymous_id", "dev-7", "web"), "admin:alice")
    ledger.suppress(pending)
    assert store.suppressions().matches("web", None, "dev-7")
    assert not store.suppressions().matches("ios", None, "dev-7")
    env = dict(os.environ) | {"CLICKHOUSE_URL": clickhouse.url, "CLICKHOUSE_DATABASE": ch_database,
                              "ARCHIVE_URI": str(tmp_path / "archive"), "PRIVACY_REFRESH_S": "0.2",
                              "PRIVACY_SETTLE_MARGIN_S": "0"}
    ran = _evpipe(env, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 request(s) run, 0 not done" in ran.stdout
    done = ledger.get(pending.id)
    assert done is not None and done.status == "done" and done.requested_by == "admin:alice"
    assert {name: step["remaining"] for name, step in done.steps.items()} == {"clickhouse": 0, "archive": 0}
    listed = _evpipe(env, "list")
    assert pending.id in listed.stdout and "admin:alice" in listed.stdout
    shown = _evpipe(env, "status", pending.id, "--json")
    assert shown.returncode == 0 and '"status": "done"' in shown.stdout
    assert _evpipe(env, "run").stdout.strip().endswith("0 request(s) run, 0 not done")
    again = _evpipe(env, "run", "--all")  # after a restore: every request again, a new run each
    assert again.stdout.strip().endswith("1 request(s) run, 0 not done"), again.stdout + again.stderr
    rerun = ledger.get(pending.id)
    assert rerun is not None and rerun.runs == 2 and len(rerun.history) == 1
    assert _evpipe(env, "status", "del-nope").returncode == 1

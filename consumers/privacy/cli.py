"""`evpipe privacy`: delete or suppress a user's events everywhere, and show the evidence."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from typing import TYPE_CHECKING, Any

from evpipe.settings import describe

if TYPE_CHECKING:
    from consumers.privacy.eraser import Eraser
    from consumers.privacy.settings import PrivacyCommandSettings
    from evpipe.privacy.request import PrivacyRequest
    from evpipe.privacy.store import PrivacyStore

DESCRIPTION = """\
Delete a user's events where they live, or only suppress them (no new event of theirs is
stored, anywhere). Every request is recorded in the ledger with who asked, when, what was
done in each store and the check that 0 rows remain; `status` shows it. Requests are
idempotent: asking again, or running again after a crash, finishes the same request.
Stage 3 (PRIVACY_STORE=clickhouse, the default): ClickHouse and the Parquet archive.
Stages 1-2 (PRIVACY_STORE=postgres): the Postgres events table.

examples:
  evpipe privacy delete --user-id u-123
  evpipe privacy suppress --anonymous-id 5f0c... --source web
  evpipe privacy status del-3a1f...
  evpipe privacy run            # carry out the deletions recorded by the gateway's admin routes"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from consumers.privacy.settings import PrivacyCommandSettings

    parser = subparsers.add_parser("privacy", help="delete or suppress a user's events everywhere; audit ledger",
                                   description=DESCRIPTION, epilog=describe(PrivacyCommandSettings),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="privacy_action", metavar="ACTION", required=True)
    for action, text in (("delete", "suppress the subject, then erase their rows everywhere"),
                         ("suppress", "suppress the subject: no new event of theirs is stored")):
        sub = actions.add_parser(action, help=text)
        who = sub.add_mutually_exclusive_group(required=True)
        who.add_argument("--user-id")
        who.add_argument("--anonymous-id")
        sub.add_argument("--source", default="", help="only this source_id (default: every source)")
        sub.add_argument("--requested-by", default=f"{getpass.getuser()}@{socket.gethostname()}",
                         help="who asked (recorded in the ledger; default: user@host)")
        sub.set_defaults(func=run_request, action=action)
    status = actions.add_parser("status", help="a request's evidence per store (default: the latest request)")
    status.add_argument("request_id", nargs="?")
    status.add_argument("--json", action="store_true", help="the ledger document as JSON")
    status.set_defaults(func=run_status)
    actions.add_parser("list", help="every request, newest first").set_defaults(func=run_list)
    pending = actions.add_parser("run", help="carry out requests not done yet (e.g. from the admin routes)")
    pending.add_argument("request_id", nargs="?")
    pending.add_argument("--all", action="store_true",
                         help="done requests too: erase again what a restore from a backup brought back")
    pending.set_defaults(func=run_pending)


def _settings() -> PrivacyCommandSettings:
    from consumers.privacy.settings import PrivacyCommandSettings
    from evpipe.observability.logs import configure_process
    from evpipe.settings import load

    settings = load(PrivacyCommandSettings)
    configure_process("info", settings.evpipe_log_format)
    return settings


def _store(settings: PrivacyCommandSettings) -> PrivacyStore:
    from evpipe.privacy.open import open_privacy_store
    from evpipe.settings import ConfigError

    store = open_privacy_store(settings.privacy_store, "clickhouse", clickhouse_url=settings.clickhouse_url,
                               clickhouse_database=settings.clickhouse_database,
                               clickhouse_cluster=settings.clickhouse_cluster, database_url=settings.database_url,
                               postgres_table=settings.privacy_postgres_table)
    if store is None:
        raise ConfigError("PRIVACY_STORE=off: there is no suppression list or ledger to record requests in")
    return store


def _erasers(settings: PrivacyCommandSettings, store: PrivacyStore) -> list[Eraser]:
    if store.name == "postgres":
        from consumers.privacy.postgres import PostgresEraser

        return [PostgresEraser(settings.database_url, settings.privacy_postgres_table)]
    from consumers.archiver.store import open_store
    from consumers.privacy.archive import ArchiveEraser, Encoding
    from consumers.privacy.clickhouse import ClickHouseEraser
    from evpipe.clickhouse import connect

    archive = open_store(settings.archive_uri or str(settings.evpipe_state_dir / "archive"), settings.s3_endpoint_url)
    client = connect(settings.clickhouse_url, settings.clickhouse_timeout_s)
    encoding = Encoding(settings.archiver_zstd_level, settings.archiver_row_group_rows)
    return [ClickHouseEraser(client, settings.clickhouse_database, settings.clickhouse_cluster),
            ArchiveEraser(archive, settings.kafka_topic, encoding)]


def _runner(settings: PrivacyCommandSettings, store: PrivacyStore) -> Any:
    from consumers.privacy.runner import Runner
    from evpipe.privacy.request import Ledger

    return Runner(Ledger(store), _erasers(settings, store), settings.privacy_refresh_s + settings.privacy_settle_margin_s)


def run_request(args: argparse.Namespace) -> int:
    from evpipe.privacy.request import Ledger
    from evpipe.privacy.subjects import Kind, Subject

    settings = _settings()
    store = _store(settings)
    store.ensure()
    kind: Kind = "user_id" if args.user_id else "anonymous_id"
    subject = Subject(kind, args.user_id or args.anonymous_id, args.source)
    request = Ledger(store).open(args.action, subject, args.requested_by)
    print(f"request {request.id}: {args.action} {subject.describe()}", flush=True)
    done = _runner(settings, store).run(request)
    print(render(done))
    return 0 if done.status == "done" else 1


def run_pending(args: argparse.Namespace) -> int:
    from evpipe.privacy.request import Ledger

    settings = _settings()
    store = _store(settings)
    ledger = Ledger(store)
    todo = [r for r in ledger.all() if (args.all or r.status != "done") and args.request_id in (None, r.id)]
    runner = _runner(settings, store) if todo else None
    failed = 0
    for request in reversed(todo):  # oldest first
        print(f"request {request.id}: {request.action} {request.subject.describe()}", flush=True)
        done = runner.run(request)  # type: ignore[union-attr]
        print(render(done))
        failed += done.status != "done"
    print(f"{len(todo)} request(s) run, {failed} not done")
    return 1 if failed else 0


def run_status(args: argparse.Namespace) -> int:
    import orjson

    from evpipe.privacy.request import Ledger

    ledger = Ledger(_store(_settings()))
    request = ledger.get(args.request_id) if args.request_id else next(iter(ledger.all()), None)
    if request is None:
        print("no such request" if args.request_id else "no privacy requests recorded", file=sys.stderr)
        return 1
    print(orjson.dumps(request.document(), option=orjson.OPT_INDENT_2).decode() if args.json else render(request))
    return 0


def run_list(_args: argparse.Namespace) -> int:
    from evpipe.privacy.request import Ledger
    from evpipe.table import render_table

    rows = [{"request": r.id, "action": r.action, "subject": r.subject.describe(), "requested_by": r.requested_by,
             "requested_at": r.requested_at, "status": r.status, "runs": r.runs}
            for r in Ledger(_store(_settings())).all()]
    print(render_table(rows) if rows else "no privacy requests recorded")
    return 0


def render(request: PrivacyRequest) -> str:
    from evpipe.table import render_table

    head = (f"request {request.id} ({request.action} {request.subject.describe()}), asked by "
            f"{request.requested_by} at {request.requested_at}; suppressed since {request.suppressed_at}; "
            f"status {request.status}{f' ({request.error})' if request.error else ''}")
    rows = [{"store": name, "status": step.get("status"),
             "rows found": step.get("rows_found", step.get("rows_removed")),
             "rows deleted": step.get("rows_deleted", step.get("rows_removed", step.get("rows_found"))),
             "files matched": step.get("files_matched"),
             "files rewritten": len(step["files_rewritten"]) if "files_rewritten" in step else None,
             "remaining (checked)": step.get("remaining"), "checked at": step.get("checked_at")}
            for name, step in request.steps.items()]
    return head + ("\n" + render_table(rows) if rows else "")

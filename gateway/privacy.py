"""The gateway's side of privacy: its copy of the suppression list, and the admin routes.

* The list is read from the store of the gateway's stage (ClickHouse behind
  Kafka, Postgres behind Redis or Postgres) every ``PRIVACY_REFRESH_S`` by a
  background task; the ingest path only looks events up in the copy
  (``Intake._suppress``), never waits for the store.
* ``/admin/privacy/requests`` takes the same requests as ``evpipe privacy``, behind
  ``GATEWAY_ADMIN_KEYS`` (never an ingest key). A request is recorded in the
  ledger and its subject suppressed at once; a deletion is then carried out by
  ``evpipe privacy run`` (or ``evpipe privacy delete``), a job, not a gateway request:
  rewriting an archive takes minutes and must survive a gateway restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from evpipe.privacy.cache import SuppressionCache
from evpipe.privacy.open import Stage, open_privacy_store, suppression_cache
from evpipe.privacy.request import Ledger, PrivacyRequest
from evpipe.privacy.store import PrivacyStore, PrivacyStoreError
from evpipe.privacy.subjects import ALL_SOURCES, KINDS, Subject
from gateway.auth import KeyConfigError, KeyStore, key_from_headers, load_keys, parse_pairs
from gateway.intake import error_response, json_response
from gateway.settings import GatewaySettings

log = logging.getLogger("evpipe.gateway")


def open_gateway_privacy_store(settings: GatewaySettings) -> PrivacyStore | None:
    stage: Stage = "clickhouse" if settings.gateway_backend == "kafka" else "postgres"
    return open_privacy_store(settings.privacy_store, stage, clickhouse_url=settings.clickhouse_url,
                              clickhouse_database=settings.clickhouse_database,
                              clickhouse_cluster=settings.clickhouse_cluster, database_url=settings.database_url,
                              postgres_table=settings.gateway_postgres_table)


class GatewayPrivacy:
    def __init__(self, settings: GatewaySettings, store: PrivacyStore | None) -> None:
        self.settings = settings
        self.store = store
        self.cache: SuppressionCache | None = suppression_cache(store, settings)
        admin = parse_pairs(settings.gateway_admin_keys.split(","), "GATEWAY_ADMIN_KEYS")
        shared = set(admin) & set(load_keys(settings.gateway_api_keys, settings.gateway_api_keys_file))
        if shared:
            raise KeyConfigError("GATEWAY_ADMIN_KEYS: an admin key is also an ingest key (GATEWAY_API_KEYS); "
                                 "give the admin routes keys of their own")
        self.admins = KeyStore(admin) if admin else None

    @classmethod
    def create(cls, settings: GatewaySettings) -> GatewayPrivacy:
        try:
            return cls(settings, open_gateway_privacy_store(settings))
        except KeyConfigError as exc:
            from evpipe.settings import ConfigError

            raise ConfigError(str(exc)) from None

    async def refresh_forever(self) -> None:
        """Re-read the list every PRIVACY_REFRESH_S (first at once); a failed read keeps the last copy."""
        if self.cache is None:
            return
        while True:
            await asyncio.to_thread(self.cache.refresh)
            await asyncio.sleep(self.settings.privacy_refresh_s)

    # -- admin routes --------------------------------------------------------------------------------

    def _admin(self, request: Request) -> str | Response:
        """The admin's name, or the refusal: 404 with no admin keys set, 401 for any other key."""
        if self.admins is None or self.store is None:
            return error_response(404, "admin routes are off: set GATEWAY_ADMIN_KEYS (and a PRIVACY_STORE)")
        identity = self.admins.lookup(key_from_headers(dict(request.headers)))
        if identity is None:
            return error_response(401, "admin key required (GATEWAY_ADMIN_KEYS)")
        return identity.source_id

    async def create_request(self, request: Request) -> Response:
        admin = self._admin(request)
        if isinstance(admin, Response):
            return admin
        try:
            action, subject = _parse_request(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return error_response(400, str(exc)[:300])
        assert self.store is not None
        try:
            recorded = await asyncio.to_thread(_record, self.store, action, subject, f"admin:{admin}")
        except PrivacyStoreError as exc:
            return error_response(503, str(exc), retry_after=5)
        return json_response(recorded.document(), 202)

    async def get_request(self, request: Request) -> Response:
        admin = self._admin(request)
        if isinstance(admin, Response):
            return admin
        assert self.store is not None
        try:
            found = await asyncio.to_thread(Ledger(self.store).get, request.path_params["request_id"])
        except PrivacyStoreError as exc:
            return error_response(503, str(exc), retry_after=5)
        return json_response(found.document()) if found else error_response(404, "no such request")

    async def list_requests(self, request: Request) -> Response:
        admin = self._admin(request)
        if isinstance(admin, Response):
            return admin
        assert self.store is not None
        try:
            found = await asyncio.to_thread(Ledger(self.store).all)
        except PrivacyStoreError as exc:
            return error_response(503, str(exc), retry_after=5)
        return json_response({"requests": [r.document() for r in found]})


def _parse_request(body: Any) -> tuple[str, Subject]:
    if not isinstance(body, dict):
        raise TypeError("body must be a JSON object")
    action = body.get("action")
    if action not in ("delete", "suppress"):
        raise ValueError("action must be 'delete' or 'suppress'")
    named = [kind for kind in KINDS if body.get(kind)]
    if len(named) != 1:
        raise ValueError("give exactly one of user_id and anonymous_id")
    source = body.get("source_id") or ALL_SOURCES
    if not isinstance(source, str) or not isinstance(body[named[0]], str):
        raise TypeError("user_id, anonymous_id and source_id are strings")
    return action, Subject(named[0], body[named[0]], source)


def _record(store: PrivacyStore, action: Any, subject: Subject, requested_by: str) -> PrivacyRequest:
    """Record the request and suppress its subject now; a suppression is then done, a deletion pending."""
    store.ensure()
    ledger = Ledger(store)
    request = ledger.open(action, subject, requested_by)
    ledger.suppress(request)
    if action == "suppress" and request.status != "done":
        request.status = "done"
        request.step("suppress").update(status="done", done_at=request.suppressed_at)
        ledger.save(request)
    return request

"""The committed OpenAPI document equals the one built from the code, the served one, and the routes."""

from __future__ import annotations

import json

import orjson
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.openapi import COMMITTED, openapi_document


def test_committed_document_is_current() -> None:
    assert json.loads(COMMITTED.read_text()) == openapi_document(), (
        "gateway/openapi.json is stale: run `python -m gateway.openapi`")


def test_served_document_and_routes_match(redis_client: TestClient) -> None:
    served = redis_client.get("/openapi.json")
    assert served.status_code == 200
    document = orjson.loads(served.content)
    assert document == openapi_document()
    routes = {(route.path, method.lower()) for route in redis_client.app.routes  # type: ignore[attr-defined]
              if isinstance(route, Route) for method in (route.methods or ()) if method != "HEAD"}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented

"""The OpenAPI 3.1 document of the gateway (served at /openapi.json; committed as gateway/openapi.json).

Limits in the document are the defaults, so the committed file does not depend
on the environment; a test keeps the file, this builder and the routes in sync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.segment import CALLS, SHORT_PATHS
from gateway.settings import GatewaySettings
from schemas.fields import FIELDS, Kind, Origin

COMMITTED = Path(__file__).resolve().parent / "openapi.json"

_KIND_SCHEMA: dict[Kind, dict[str, Any]] = {
    Kind.UUID: {"type": "string", "format": "uuid"},
    Kind.TEXT: {"type": "string"},
    Kind.TIMESTAMP: {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
    Kind.JSON_OBJECT: {"type": "object"},
    Kind.SMALLINT: {"type": "integer"},
}


def _event_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for f in FIELDS:
        if f.origin is Origin.GATEWAY:
            continue
        schema = dict(_KIND_SCHEMA[f.kind], description=f.doc)
        if f.kind is Kind.TEXT:
            schema |= {"minLength": max(1, f.min_length)}
            if f.max_length:
                schema["maxLength"] = f.max_length
        properties[f.name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": ["type"],
            "anyOf": [{"required": ["user_id"]}, {"required": ["anonymous_id"]}],
            "description": "One event. Gateway fields (source_id, received_at, schema_version, violations) are refused."}


def _segment_message() -> dict[str, Any]:
    text = {"type": "string"}
    obj = {"type": "object"}
    return {"type": "object", "description": "A Segment message (see docs/gateway.md 'Segment mapping').", "properties": {
        "type": {"type": "string", "enum": list(CALLS)}, "messageId": text, "event": text, "name": text,
        "category": text, "userId": {"type": ["string", "number"]}, "anonymousId": {"type": ["string", "number"]},
        "previousId": text, "groupId": text, "properties": obj, "traits": obj, "context": obj, "integrations": obj,
        "timestamp": {"type": "string", "format": "date-time"}, "originalTimestamp": text, "sentAt": text,
        "channel": text, "writeKey": text, "version": {}, "receivedAt": text, "_metadata": {}, "options": {},
    }}


def _responses(limits: GatewaySettings) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds before retrying."}}
    return {
        "200": {"description": "Every valid event is durably in the backend (with Kafka: in Kafka, or in the "
                               "gateway's fallback store while Kafka is down); rejected ones are listed.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}},
        "400": {"description": "Malformed body, or no valid event (the list says why for each).",
                "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Result"}, {"$ref": "#/components/schemas/Error"}]}}}},
        "401": {"description": "Missing or unknown API key.", **err},
        "413": {"description": f"Over a limit (body {limits.gateway_max_body_bytes} bytes compressed, "
                               f"{limits.gateway_max_decompressed_bytes} decompressed, event "
                               f"{limits.gateway_max_event_bytes} bytes, batch {limits.gateway_max_batch_events} "
                               "events); the message names it.", **err},
        "415": {"description": "Unsupported Content-Encoding.", **err},
        "429": {"description": "Rate limit of this key exceeded.", "headers": retry, **err},
        "503": {"description": "Backend down, slow or saturated (and the fallback store, if any, did not take "
                               "the events), or the gateway is shutting down. Resend "
                               "the same events (same event_id) after Retry-After.", "headers": retry, **err},
    }


def _body(schema: dict[str, Any], ndjson: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if ndjson:
        content["application/x-ndjson"] = {"schema": {"type": "string", "description": "One event per line."}}
    return {"required": True, "content": content,
            "description": "May be sent with Content-Encoding: gzip."}


def _post(summary: str, body: dict[str, Any], defaults: GatewaySettings, tag: str) -> dict[str, Any]:
    return {"post": {"summary": summary, "tags": [tag], "requestBody": body, "responses": _responses(defaults),
                     "security": [{"bearer": []}, {"apiKey": []}, {"basic": []}, {}]}}


def openapi_document(_settings: GatewaySettings | None = None) -> dict[str, Any]:
    defaults = GatewaySettings.model_construct()  # documented limits are the defaults, not this process's
    event = {"$ref": "#/components/schemas/Event"}
    message = {"$ref": "#/components/schemas/SegmentMessage"}
    native_body = {"oneOf": [
        event, {"type": "array", "items": event},
        {"type": "object", "properties": {"batch": {"type": "array", "items": event}, "write_key": {"type": "string"}},
         "required": ["batch"], "additionalProperties": False},
    ]}
    paths: dict[str, Any] = {
        "/v1/events": _post("Send one event, an array, {\"batch\": [...]} or NDJSON", _body(native_body, True),
                            defaults, "native"),
        "/v1/batch": _post("Segment batch", _body({"type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "items": message}, "sentAt": {"type": "string"},
            "context": {"type": "object"}, "writeKey": {"type": "string"}}}, False), defaults, "segment"),
    }
    for call in CALLS:
        paths[f"/v1/{call}"] = _post(f"Segment {call}", _body(message, False), defaults, "segment")
    for short, call in SHORT_PATHS.items():
        paths[f"/v1/{short}"] = {"post": {**paths[f"/v1/{call}"]["post"],
                                          "summary": f"Segment {call} (analytics.js short path)"}}
    for path, summary in (("/healthz", "Process alive"), ("/readyz", "Backend reachable and not saturated"),
                          ("/metrics", "Prometheus metrics"), ("/openapi.json", "This document")):
        paths[path] = {"get": {"summary": summary, "tags": ["operations"], "responses": {
            "200": {"description": "OK"}, **({"503": {"description": "Not ready"}} if path == "/readyz" else {})}}}
    paths.update(_admin_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "evpipe gateway", "version": "1",
                 "description": "Event ingestion. A 2xx means every accepted event is durably in the backend "
                                "(with Kafka: in Kafka or in the gateway's fallback store)."},
        "paths": paths,
        "components": {
            "schemas": {
                "Event": _event_schema(), "SegmentMessage": _segment_message(),
                "Result": {"type": "object", "required": ["accepted", "rejected"], "properties": {
                    "accepted": {"type": "integer"}, "success": {"type": "boolean"},
                    "rejected": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "error": {"type": "string"}}}}}},
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "event_ids": {"type": "array", "items": {"type": "string"}}}},
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "basic": {"type": "http", "scheme": "basic", "description": "Segment style: write key as user name."},
            },
        },
    }


def _admin_paths() -> dict[str, Any]:
    """The privacy admin routes (gateway/privacy.py): GATEWAY_ADMIN_KEYS only, never an ingest key."""
    auth = {"401": {"description": "No admin key"}, "404": {"description": "Admin routes off (no GATEWAY_ADMIN_KEYS)"},
            "503": {"description": "The privacy store did not answer"}}
    body = {"type": "object", "required": ["action"], "properties": {
        "action": {"type": "string", "enum": ["delete", "suppress"]}, "user_id": {"type": "string"},
        "anonymous_id": {"type": "string"}, "source_id": {"type": "string", "description": "empty: every source"}},
        "description": "Exactly one of user_id and anonymous_id."}
    tag = ["privacy"]
    return {
        "/admin/privacy/requests": {
            "post": {"summary": "Suppress a subject now and record the request (a deletion is then run by "
                                "`evpipe privacy run`); asking again returns the same request",
                     "tags": tag, "requestBody": {"content": {"application/json": {"schema": body}}},
                     "responses": {"202": {"description": "Recorded; the subject is suppressed"},
                                   "400": {"description": "Bad request body"}, **auth}},
            "get": {"summary": "Every privacy request, newest first", "tags": tag,
                    "responses": {"200": {"description": "OK"}, **auth}},
        },
        "/admin/privacy/requests/{request_id}": {
            "get": {"summary": "One request: status, steps, rows and files touched, the checks that 0 remain",
                    "tags": tag, "parameters": [{"name": "request_id", "in": "path", "required": True,
                                                 "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}, **auth}},
        },
    }


def write_committed() -> Path:
    COMMITTED.write_text(json.dumps(openapi_document(), indent=2) + "\n")
    return COMMITTED


if __name__ == "__main__":
    print(write_committed())

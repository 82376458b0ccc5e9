"""Hostile HTTP requests for the abuse run: generated deterministically from a seed, each with its kind.

Each generator returns (kind, path, headers, body). None of them is a valid request, so every answer
must be a 4xx (or a 503 under load), never a 2xx or another 5xx.
"""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable
from functools import cache

import orjson

KEY = "abuse-key"
ROUTES = ["/v1/events", "/v1/batch", "/v1/track", "/v1/identify", "/v1/page", "/v1/t", "/v1/b"]
Request = tuple[str, str, dict[str, str], bytes]


@cache
def gzip_bomb() -> bytes:
    """~256 MiB of zeros inflating from ~250 KiB: far over the 20 MiB decompressed cap."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    chunk = bytes(1 << 20)
    return b"".join(comp.compress(chunk) for _ in range(256)) + comp.flush()


@cache
def huge_string_body() -> bytes:
    return orjson.dumps({"type": "x", "user_id": "u", "properties": {"s": "A" * (6 << 20)}})  # over 5 MiB


def _auth(rng: random.Random) -> dict[str, str]:
    return {"X-Api-Key": KEY, "Content-Type": rng.choice(["application/json", "text/plain"])}


def malformed_json(rng: random.Random) -> Request:
    good = orjson.dumps({"type": "page_view", "user_id": "u1"})
    cut = good[: rng.randrange(1, len(good))] if rng.random() < 0.5 else good + b"}" * rng.randrange(1, 4)
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return "malformed_json", rng.choice(ROUTES), _auth(rng), rng.choice([cut, junk, b"{", b"[", b"", b"nul"])


def wrong_types(rng: random.Random) -> Request:
    choices: list[tuple[str, object]] = [("type", 12), ("type", None), ("type", []), ("type", {}), ("type", True), ("type", ""),
                             ("event_id", "not-a-uuid"), ("event_id", []), ("occurred_at", "yesterday"),
                             ("occurred_at", {}), ("user_id", []), ("user_id", {})]
    field, bad = rng.choice(choices)
    doc: object = {"type": "page_view", "user_id": "u1", field: bad}
    if rng.random() < 0.3:
        doc = rng.choice([42, "str", None, [1, 2], True])  # not an object at all
    return "wrong_types", "/v1/events", _auth(rng), orjson.dumps(doc)


def huge_strings(rng: random.Random) -> Request:
    return "huge_strings", "/v1/events", _auth(rng), huge_string_body()


def deep_nesting(rng: random.Random) -> Request:
    # Around the serialiser's limit (254), the parser's (1024), and far beyond.
    depth = rng.choice([300, 1000, 1100, 10000, 100000])
    body = b'{"type":"t","user_id":"u","properties":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    if rng.random() < 0.5:
        body = b"[" * depth + b"]" * depth
    return "deep_nesting", "/v1/events", _auth(rng), body


def invalid_utf8(rng: random.Random) -> Request:
    bad = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    body = b'{"type":"' + bad + b'","user_id":"u' + bad + b'"}'
    return "invalid_utf8", rng.choice(ROUTES), _auth(rng), body


def gzip_bombs(rng: random.Random) -> Request:
    body = gzip_bomb() if rng.random() < 0.5 else gzip.compress(b"not json at all " * 100)
    headers = _auth(rng) | {"Content-Encoding": "gzip"}
    if rng.random() < 0.2:
        body = b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic"
    return "gzip_bombs", "/v1/events", headers, body


def wrong_content_types(rng: random.Random) -> Request:
    headers = {"X-Api-Key": KEY, "Content-Type": rng.choice(["application/xml", "multipart/form-data; boundary=x",
                                                              "image/png", "application/x-www-form-urlencoded"])}
    if rng.random() < 0.5:
        headers["Content-Encoding"] = rng.choice(["br", "deflate", "compress", "zstd", "gzip, gzip"])
    return "wrong_content_types", "/v1/events", headers, rng.choice([b"<event/>", b"a=b&c=d", b"\x89PNG"])


def header_floods(rng: random.Random) -> Request:
    headers = {f"X-Flood-{i}": "v" * rng.randrange(1, 200) for i in range(rng.choice([100, 500]))}
    headers |= {"X-Api-Key": KEY, "Content-Type": "application/json"}
    return "header_floods", "/v1/events", headers, b"{}"


def missing_or_forged_keys(rng: random.Random) -> Request:
    body = orjson.dumps({"type": "page_view", "user_id": "u1"})
    headers = {"Content-Type": "application/json"}
    choice = rng.randrange(5)
    if choice == 1:
        headers["X-Api-Key"] = KEY + "x"
    elif choice == 2:
        headers["Authorization"] = "Bearer " + "k" * rng.randrange(1, 5000)
    elif choice == 3:
        headers["Authorization"] = "Basic !!!not-base64!!!"
    elif choice == 4:
        body = orjson.dumps({"type": "page_view", "user_id": "u1", "write_key": "forged"})
    return "missing_or_forged_keys", rng.choice(ROUTES), headers, body


# Weights: most requests are cheap; the megabyte-sized ones are a few dozen each.
GENERATORS: list[tuple[Callable[[random.Random], Request], float]] = [
    (malformed_json, 30), (wrong_types, 30), (invalid_utf8, 10), (deep_nesting, 6), (wrong_content_types, 10),
    (missing_or_forged_keys, 12), (header_floods, 2), (gzip_bombs, 0.4), (huge_strings, 0.3),
]


def generate(rng: random.Random) -> Request:
    gens, weights = zip(*GENERATORS, strict=True)
    return rng.choices(gens, weights)[0](rng)

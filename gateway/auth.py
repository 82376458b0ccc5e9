"""API keys: each maps to a source_id; keys are held and compared only as SHA-256 digests.

Lookup hashes the presented key and finds its digest in a dict: the timing of a
dict lookup on a SHA-256 digest reveals nothing usable about the key itself,
and the final equality check uses ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    source_id: str
    key_id: str  # a digest prefix: names the key (rate limiting) without holding it


class KeyConfigError(ValueError):
    """The configured keys cannot be parsed; the message names the bad entry."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def parse_pairs(lines: Iterable[str], origin: str) -> dict[str, str]:
    """Parse ``key=source_id`` entries (blank entries and # comments skipped)."""
    pairs: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        key, sep, source = (part.strip() for part in entry.partition("="))
        if not sep or not key or not source:
            raise KeyConfigError(f"{origin} entry {number}: expected key=source_id")
        pairs[key] = source
    return pairs


def load_keys(env_value: str, file: Path | None) -> dict[str, str]:
    pairs = parse_pairs(env_value.split(","), "GATEWAY_API_KEYS")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise KeyConfigError(f"GATEWAY_API_KEYS_FILE {file}: {exc.strerror}") from None
        pairs |= parse_pairs(text.splitlines(), f"GATEWAY_API_KEYS_FILE {file}")
    if not pairs:
        raise KeyConfigError("no API keys configured: set GATEWAY_API_KEYS or GATEWAY_API_KEYS_FILE")
    return pairs


class KeyStore:
    def __init__(self, pairs: Mapping[str, str]) -> None:
        self._by_digest = {_digest(key): (_digest(key), source) for key, source in pairs.items()}

    def lookup(self, key: str | None) -> Identity | None:
        """The key's identity, or None when it is missing or unknown."""
        if not key:
            return None
        digest = _digest(key)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return Identity(source_id=found[1], key_id=digest.hex()[:16])

    def source_for(self, key: str | None) -> str | None:
        identity = self.lookup(key)
        return identity.source_id if identity else None


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """Bearer token, HTTP Basic user name (Segment's write key), or X-Api-Key."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return value.strip() or None
        if scheme == "basic":
            return _basic_user(value.strip())
    return headers.get("x-api-key") or None


def _basic_user(value: str) -> str | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user = decoded.partition(":")[0]
    return user or None

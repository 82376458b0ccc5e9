"""Users and roles of the HTTP interface, and how a request names its user (as ClickHouse accepts it)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("admin", "readonly")


@dataclass(frozen=True)
class User:
    name: str
    password: str
    readonly: bool
    loopback_only: bool = False  # the implicit password-less default user


class UsersError(ValueError):
    """CLICKHOUSE_USERS cannot be parsed; the message names the bad entry."""


def parse_users(text: str) -> dict[str, User]:
    users: dict[str, User] = {}
    for number, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not parts[0] or parts[2] not in ROLES:
            raise UsersError(f"CLICKHOUSE_USERS entry {number}: expected name:password:role with role "
                             f"admin or readonly")
        users[parts[0]] = User(parts[0], parts[1], parts[2] == "readonly")
    users.setdefault("default", User("default", "", readonly=False, loopback_only=True))
    return users


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) from X-ClickHouse-User/-Key, HTTP Basic, or the user/password URL parameters."""
    if "x-clickhouse-user" in headers:
        return headers["x-clickhouse-user"], headers.get("x-clickhouse-key", "")
    authorization = headers.get("authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        user, _, password = decoded.partition(":")
        return user or "default", password
    return params.get("user", "default"), params.get("password", "")


def authenticate(users: Mapping[str, User], name: str, password: str, peer: str | None) -> User | None:
    user = users.get(name)
    if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
        return None
    if user.loopback_only and not _is_loopback(peer):
        return None
    return user


def _is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False

"""A fallback object: the bytes that keep a group of messages, and the name that says what it holds.

The body is the messages exactly as they would have been produced, so the drain
re-produces them without parsing or validating anything again:

    b"EVFB\\x01" count:u32
    per message: topic_len:u16 topic key_len:i32 (-1: no key) key value_len:u32 value
                 header_count:u16 (name_len:u16 name value_len:u32 value)*
    crc32 of everything before it:u32

The name sorts by the time it was written and carries its event count, so a
listing alone gives the pending events and the oldest one's age (no object is read
for the metrics): ``<written ms>-<events>-<writer id>-<sequence>.evfb``.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.backends.base import Message

MAGIC = b"EVFB\x01"
SUFFIX = ".evfb"
_COUNT = struct.Struct(">I")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_NAME = re.compile(r"^(\d{13})-(\d{7})-([0-9A-Za-z]+)-(\d{9})\.evfb$")


class CorruptObject(ValueError):
    """An object whose bytes do not decode (a torn or damaged file): it is left in place and logged."""


def encode(messages: Iterable[Message]) -> bytes:
    parts: list[bytes] = [MAGIC, b""]
    count = 0
    for message in messages:
        count += 1
        topic = message.topic.encode()
        key = message.key
        parts += [_U16.pack(len(topic)), topic, _I32.pack(-1 if key is None else len(key)), key or b"",
                  _COUNT.pack(len(message.value)), message.value, _U16.pack(len(message.headers))]
        for name, value in message.headers:
            raw = name.encode()
            parts += [_U16.pack(len(raw)), raw, _COUNT.pack(len(value)), value]
    parts[1] = _COUNT.pack(count)
    body = b"".join(parts)
    return body + _COUNT.pack(zlib.crc32(body))


def decode(data: bytes) -> list[Message]:
    if len(data) < len(MAGIC) + 8 or not data.startswith(MAGIC):
        raise CorruptObject("not a fallback object (no EVFB header)")
    body, (crc,) = data[:-4], _COUNT.unpack(data[-4:])
    if zlib.crc32(body) != crc:
        raise CorruptObject("checksum mismatch")
    reader = _Reader(body, len(MAGIC))
    count = reader.u32()
    messages = []
    for _ in range(count):
        topic = reader.take(reader.u16()).decode()
        key_len = reader.i32()
        key = None if key_len < 0 else reader.take(key_len)
        value = reader.take(reader.u32())
        headers = tuple((reader.take(reader.u16()).decode(), reader.take(reader.u32()))
                        for _ in range(reader.u16()))
        messages.append(Message(topic, key, value, headers))
    if reader.at != len(body):
        raise CorruptObject(f"{len(body) - reader.at} bytes after the last message")
    return messages


class _Reader:
    __slots__ = ("at", "data")

    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise CorruptObject("truncated")
        chunk, self.at = self.data[self.at:end], end
        return chunk

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self.take(4))[0])

    def u32(self) -> int:
        return int(_COUNT.unpack(self.take(4))[0])


@dataclass(frozen=True, order=True)
class Pending:
    """An object waiting to be drained, as its name describes it."""

    name: str
    written_at: float  # unix seconds
    events: int


def object_name(written_at: float, events: int, writer: str, sequence: int) -> str:
    return f"{int(written_at * 1000):013d}-{min(events, 9_999_999):07d}-{writer}-{sequence:09d}{SUFFIX}"


def parse_name(name: str) -> Pending | None:
    """The object a name stands for, or None for anything else found in the store."""
    match = _NAME.match(name)
    if match is None:
        return None
    return Pending(name, int(match.group(1)) / 1000, int(match.group(2)))

"""``--from-time``: a moment as an ISO 8601 time, epoch milliseconds, or a duration ago (``15m``)."""

from __future__ import annotations

import datetime as dt
import re

DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
FORMS = "an ISO 8601 time (2026-12-04T10:00:00Z; no zone means UTC), epoch milliseconds, or a duration ago (90s, 15m, 2h, 1d)"


class BadTime(ValueError):
    """The text is none of the accepted forms; the message lists them."""


def parse_from_time(text: str, now: dt.datetime | None = None) -> int:
    """Epoch milliseconds of ``text`` (see FORMS); BadTime otherwise."""
    text = text.strip()
    duration = DURATION.fullmatch(text)
    if duration:
        moment = now or dt.datetime.now(dt.UTC)
        return _epoch_ms(moment) - round(float(duration.group(1)) * UNIT_MS[duration.group(2)])
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"{text!r} is not a time: expected {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return _epoch_ms(moment)


def _epoch_ms(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)

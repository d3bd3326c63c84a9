"""Injectable time. Everything stored is UTC; calendars use the tenant's timezone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

UTC = dt.UTC
_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return _now()


def set_now(fn: Callable[[], dt.datetime] | None) -> None:
    """Tests freeze or move time through this; None restores the real clock."""
    global _now
    _now = fn or (lambda: dt.datetime.now(UTC))


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC from a value read back from the database (SQLite drops the offset)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local_date(value: dt.datetime, tz: str) -> dt.date:
    return as_utc(value).astimezone(ZoneInfo(tz)).date()


def valid_timezone(tz: str) -> bool:
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError):
        return False
    return True

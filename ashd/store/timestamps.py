"""UTC timestamps in Ash's stored form: ISO-8601, millisecond precision, ``Z`` suffix.

Such strings sort lexically in time order and serialize to JSON unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], str]
"""Returns "now" as a stored timestamp; must be safe to call from any thread."""


def format_utc(moment: datetime) -> str:
    """Render an aware datetime as ``2026-11-23T07:52:30.123Z``.

    Raises ValueError for naive datetimes, whose zone would be a guess.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetime; pass an aware (UTC) datetime")
    utc = moment.astimezone(UTC)
    # %Y is not zero-padded below year 1000 on glibc; four digits keep the lexical order.
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")  # (a Unix second, its stored form up to the ".")


def utc_now() -> str:
    """The current time as a stored timestamp (thread-safe). Every row written is stamped, so
    the part up to the second is formatted once per second (a tuple, swapped whole)."""
    global _second
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    second = _second
    if second[0] != sec:
        second = _second = (sec, format_utc(datetime.fromtimestamp(sec, UTC))[:-4])
    return f"{second[1]}{ns // 1_000_000:03d}Z"

"""GET /api/analytics: the caller's tenant's figures over a window (Ash's shape plus ashd's).

``after`` and ``before`` (both optional, exclusive) are ISO-8601 timestamps with a time
zone; anything else is a 400 naming the parameter. The figures themselves are computed by
the database (``ashd/store/analytics.py``).
"""

from __future__ import annotations

from datetime import datetime

from ashd.errors import BadRequest
from ashd.http.base import ApiHandler
from ashd.http.usage import write_queued
from ashd.store import format_utc
from ashd.store.analytics import Window

EXAMPLE = "2026-01-31T00:00:00Z"


def parse_instant(name: str, text: str | None) -> str | None:
    """A query parameter as a stored timestamp (UTC, milliseconds); None when absent or empty.
    Raises BadRequest naming ``name``."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError:
        raise BadRequest(f"{name} must be an ISO-8601 timestamp such as {EXAMPLE}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} has no time zone; end it with Z or an offset such as +02:00 (e.g. {EXAMPLE})")
    try:
        return format_utc(moment)
    except (OverflowError, ValueError):
        raise BadRequest(f"{name} is out of range (years 1 to 9999 in UTC)") from None


def parse_window(after: str | None, before: str | None) -> Window:
    window = Window(parse_instant("after", after), parse_instant("before", before))
    if window.after is not None and window.before is not None and window.after >= window.before:
        raise BadRequest("after must be earlier than before")
    return window


class AnalyticsHandler(ApiHandler):
    """GET /api/analytics?after=&before= (read scope)."""

    async def get(self) -> None:
        arg = self.get_query_argument
        window = parse_window(arg("after", None), arg("before", None))
        await write_queued(self)  # its usage figures include them
        figures = await self.ctx.offload.read(self.ctx.store.analytics_summary, self.tenant, window)
        self.send_json(figures)

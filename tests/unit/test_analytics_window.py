"""The window of GET /api/analytics: ISO-8601 with a zone, as stored timestamps, else 400."""

from __future__ import annotations

import pytest

from ashd.errors import BadRequest
from ashd.http.analytics import parse_window
from ashd.store.analytics import Window


def test_bounds_become_stored_utc_timestamps() -> None:
    assert parse_window(None, None) == Window()
    assert parse_window("", "") == Window()
    assert parse_window("2026-01-31T00:00:00Z", "2026-02-01T01:30:00.123456+02:00") == Window(
        "2026-01-31T00:00:00.000Z", "2026-01-31T23:30:00.123Z")
    assert parse_window("2026-01-31t00:00:00z", None).after == "2026-01-31T00:00:00.000Z"
    # Years before 1000 keep four digits, so they still sort before every stored timestamp.
    assert parse_window("0999-12-31T23:00:00-01:00", None).after == "1000-01-01T00:00:00.000Z"
    assert parse_window("0005-01-01T00:00:00Z", None).after == "0005-01-01T00:00:00.000Z"


@pytest.mark.parametrize(("after", "before", "message"), [
    ("yesterday", None, "after must be an ISO-8601 timestamp"),
    (None, "2026-13-01T00:00:00Z", "before must be an ISO-8601 timestamp"),
    ("2026-01-31T00:00:00", None, "after has no time zone"),
    (None, "2026-01-31", "before has no time zone"),
    ("0001-01-01T00:00:00+01:00", None, "after is out of range"),
    ("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", "after must be earlier than before"),
    ("2026-02-01T00:00:00Z", "2026-02-01T01:00:00+01:00", "after must be earlier than before"),
])
def test_bad_bounds_are_a_400_naming_the_parameter(after: str | None, before: str | None, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_window(after, before)
    assert caught.value.message.startswith(message)

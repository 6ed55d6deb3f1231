"""Row helpers: timestamp format and JSON column decoding."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ashd.store import format_utc, utc_now
from ashd.store.rows import decode_json, encode_json


def test_timestamps_are_utc_millis_with_z() -> None:
    moment = datetime(2026, 11, 23, 8, 52, 30, 123999, tzinfo=timezone(timedelta(hours=1)))
    assert format_utc(moment) == "2026-11-23T07:52:30.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        format_utc(datetime(2026, 1, 1))  # a naive datetime on purpose


def test_timestamps_sort_lexically_in_time_order() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [format_utc(base + timedelta(milliseconds=ms)) for ms in (0, 9, 10, 999, 1000)]
    assert stamps == sorted(stamps)


def test_json_columns_round_trip_and_reject_non_objects() -> None:
    assert decode_json(encode_json({"a": [1, "b"]})) == {"a": [1, "b"]}
    assert encode_json(None) is None and decode_json(None) is None
    with pytest.raises(TypeError):
        decode_json("[1]")
    with pytest.raises(ValueError):
        decode_json("{")

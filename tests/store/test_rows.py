"""Row helpers: timestamp format, row ids and JSON column decoding."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ashd.store import dialect, format_utc, timestamps, utc_now
from ashd.store.dialect import new_id
from ashd.store.rows import decode_json, encode_json


def test_timestamps_are_utc_millis_with_z() -> None:
    moment = datetime(2026, 11, 23, 8, 52, 30, 123999, tzinfo=timezone(timedelta(hours=1)))
    assert format_utc(moment) == "2026-11-23T07:52:30.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_utc_now_is_the_clock_formatted_as_format_utc_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # utc_now formats the second once and the milliseconds per call: each must come out right,
    # also across a change of second (and of day, month and year).
    for ns in (1_795_000_000_123_999_999, 1_795_000_000_999_000_000, 1_795_000_001_000_000_000,
               1_798_761_599_999_999_999, 1_798_761_600_000_000_000):
        monkeypatch.setattr(timestamps, "time", SimpleNamespace(time_ns=lambda ns=ns: ns))
        expected = format_utc(datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC))
        assert utc_now() == expected
    assert utc_now() == "2027-01-01T00:00:00.000Z"


def test_row_ids_are_version_7_uuids_that_grow_with_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    # the 74 bits after the time vary (so ids of one millisecond do not collide)
    assert {value[14] for value in ids} == {"7"} and {value[19] for value in ids} == set("89ab")
    assert len({value[15:] for value in ids}) == len(ids)
    # the first 48 bits are the Unix time in milliseconds: ids of later milliseconds sort after
    made = []
    for ms in (1_795_000_000_123, 1_795_000_000_124, 1_795_000_001_000, 1_890_000_000_000):
        monkeypatch.setattr(dialect, "time", SimpleNamespace(time_ns=lambda ms=ms: ms * 1_000_000 + 999_999))
        value = new_id()
        assert int(value.replace("-", "")[:12], 16) == ms
        made.append(value)
    assert made == sorted(made)


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

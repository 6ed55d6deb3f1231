"""The incremental SSE parser: framing rules and arbitrary chunk boundaries."""

from __future__ import annotations

import pytest

from ashd.client.sse import SSEEvent, SSEParser, SSEProtocolError, iter_sse

# One stream exercising every rule: ids, comments, CRLF and CR line ends,
# multi-line data, non-JSON data, multi-byte UTF-8, an event without data.
STREAM = (
    ": heartbeat\r\n"
    "id: 1\r\n"
    "event: session_start\r\n"
    'data: {"sessionId": "s1", "version": "0.1.0"}\r\n'
    "\r\n"
    "event: text_delta\n"
    'data: {"delta": "h\u00e9llo \u2713"}\n'
    "\n"
    ":another comment\n"
    "event: ignored_no_data\n"
    "\n"
    "id: 2\r"
    "event: note\r"
    "data: line one\r"
    "data:line two\r"
    "\r"
    'data: {"type": "x"}\n'
    "\n"
    "event: done\n"
    'data: {"sessionId": "s1"}\n'
    "\n"
).encode()

EXPECTED = [
    SSEEvent("session_start", {"sessionId": "s1", "version": "0.1.0"}, "1"),
    SSEEvent("text_delta", {"delta": "h\u00e9llo \u2713"}, "1"),
    SSEEvent("note", "line one\nline two", "2"),
    SSEEvent("message", {"type": "x"}, "2"),
    SSEEvent("done", {"sessionId": "s1"}, "2"),
]


def parse_chunks(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def test_whole_stream_parses_to_expected_events() -> None:
    assert parse_chunks([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_a_split_anywhere_gives_the_same_events(cut: int) -> None:
    # Includes cuts inside "\r\n", inside a UTF-8 character and inside field names.
    assert parse_chunks([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_byte_at_a_time_gives_the_same_events() -> None:
    assert parse_chunks([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b'event: text_delta\ndata: {"delta": "a"}\n') == []
    assert parser.feed(b"\n") == [SSEEvent("text_delta", {"delta": "a"})]


def test_cr_at_chunk_end_then_lf_is_one_line_end_not_two() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF; no blank line yet
    assert parser.feed(b"\r\n") == [SSEEvent("message", "a")]


def test_comment_only_stream_yields_nothing() -> None:
    assert parse_chunks([b": ping\n\n: ping\r\n\r\n"]) == []


def test_id_is_none_until_sent_and_then_persists() -> None:
    events = parse_chunks([b"data: 1\n\nid: 7\ndata: 2\n\ndata: 3\n\nid\ndata: 4\n\n"])
    assert [e.id for e in events] == [None, "7", "7", ""]


def test_id_containing_nul_is_ignored() -> None:
    assert parse_chunks([b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n"])[1].id == "1"


def test_only_one_leading_space_is_stripped_from_values() -> None:
    assert parse_chunks([b"data:  two spaces\n\n"]) == [SSEEvent("message", " two spaces")]


def test_field_without_colon_is_a_field_with_empty_value() -> None:
    assert parse_chunks([b"data\ndata\n\n"]) == [SSEEvent("message", "\n")]


def test_json_that_is_not_an_object_stays_text() -> None:
    assert parse_chunks([b"data: [1, 2]\n\ndata: 3\n\n"]) == [
        SSEEvent("message", "[1, 2]"),
        SSEEvent("message", "3"),
    ]


def test_retry_and_unknown_fields_are_ignored() -> None:
    assert parse_chunks([b"retry: 10\nfoo: bar\ndata: x\n\n"]) == [SSEEvent("message", "x")]


def test_leading_byte_order_mark_is_dropped() -> None:
    assert parse_chunks([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [SSEEvent("message", "x")]


def test_unterminated_last_event_is_discarded() -> None:
    assert list(iter_sse([b"data: a\n\n", b"data: b\n"])) == [SSEEvent("message", "a")]


def test_iter_sse_is_lazy() -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b"data: a\n\n"
        raise AssertionError("read past the first event")

    assert next(iter_sse(chunks())) == SSEEvent("message", "a")


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse_chunks([b"data: \xff\n\n"]) == [SSEEvent("message", "\ufffd")]


def test_oversized_event_is_refused() -> None:
    parser = SSEParser(max_event_chars=8)
    parser.feed(b"data: 12345\n")
    with pytest.raises(SSEProtocolError):
        parser.feed(b"data: 67890\n")


def test_oversized_unterminated_line_is_refused() -> None:
    parser = SSEParser(max_event_chars=10)
    with pytest.raises(SSEProtocolError):
        for _ in range(5):
            parser.feed(b"data: xxx")


def test_events_are_frozen() -> None:
    event = SSEEvent("done", {})
    with pytest.raises(AttributeError):
        event.event = "x"  # type: ignore[misc]

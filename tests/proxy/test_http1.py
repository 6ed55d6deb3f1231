"""The model proxy's HTTP/1.1 relay (ashd/proxy/http1.py): a chunked body is copied in its
own framing; what arrived together goes out in one write (one send to the CLI), and a piece
that arrived alone is written before the relay waits for the next."""

from __future__ import annotations

import asyncio

import pytest

from ashd.proxy import http1

RESPONSE = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
            b"1;ext=1\r\n!\r\n"
            b"0\r\nx-trailer: 1\r\n\r\n")


class Writes:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        pass


async def relay(raw: bytes, out: Writes, tapped: list[bytes], progress: http1.Progress | None = None,
                first: bytes = b"") -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    head = await http1.read_head(reader)
    assert head is not None and head.chunked
    await http1.relay_body(head, reader, out, tap=tapped.append, progress=progress,  # type: ignore[arg-type]
                           first=first)


def test_chunks_that_arrived_together_are_one_write_in_canonical_framing() -> None:
    out, tapped = Writes(), []
    asyncio.run(relay(RESPONSE, out, tapped, first=b"HEAD\r\n\r\n"))
    assert out.writes == [b"HEAD\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n"]  # no extension
    assert tapped == [b"hello", b"!"]


def test_a_chunk_that_arrived_alone_is_written_before_the_next_arrives() -> None:
    async def scenario() -> Writes:
        reader = asyncio.StreamReader()
        reader.feed_data(RESPONSE[:RESPONSE.index(b"1;ext")])  # the head and the first chunk
        head = await http1.read_head(reader)
        assert head is not None
        out = Writes()
        relaying = asyncio.ensure_future(http1.relay_body(head, reader, out))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        assert out.writes == [b"5\r\nhello\r\n"] and not relaying.done()  # waiting for more, not holding it
        reader.feed_data(RESPONSE[RESPONSE.index(b"1;ext"):])
        reader.feed_eof()
        await relaying
        return out

    out = asyncio.run(scenario())
    assert out.writes == [b"5\r\nhello\r\n", b"1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n"]


def test_pieces_held_for_a_batch_are_written_when_progress_stops_the_relay() -> None:
    class Stop(Exception):
        pass

    calls = 0

    def progress() -> None:  # as the budget does: stops the relay between two pieces
        nonlocal calls
        calls += 1
        if calls == 3:  # the second chunk's size line, after the first chunk was relayed
            raise Stop

    out, tapped = Writes(), []
    with pytest.raises(Stop):
        asyncio.run(relay(RESPONSE, out, tapped, progress=progress))
    assert out.writes == [b"5\r\nhello\r\n"] and tapped == [b"hello"]


def test_a_chunk_without_its_crlf_is_refused_and_not_relayed() -> None:
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    out = Writes()
    with pytest.raises(http1.HttpError):
        asyncio.run(relay(raw, out, []))
    assert out.writes == []

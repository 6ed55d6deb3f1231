"""The model proxy's HTTP/1.1 relay (ashd/proxy/http1.py): a chunked body is copied in its
own framing, each chunk in one write (one send to the CLI instead of two)."""

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


async def relay(raw: bytes) -> tuple[Writes, list[bytes]]:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    head = await http1.read_head(reader)
    assert head is not None and head.chunked
    out, tapped = Writes(), []
    await http1.relay_body(head, reader, out, tap=tapped.append)  # type: ignore[arg-type]
    return out, tapped


def test_each_chunk_is_one_write_in_canonical_framing() -> None:
    out, tapped = asyncio.run(relay(RESPONSE))
    assert out.writes[:2] == [b"5\r\nhello\r\n", b"1\r\n!\r\n"]  # the extension is dropped
    assert b"".join(out.writes[2:]) == b"0\r\nx-trailer: 1\r\n\r\n"
    assert tapped == [b"hello", b"!"]


def test_a_chunk_without_its_crlf_is_refused_and_not_relayed() -> None:
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    with pytest.raises(http1.HttpError):
        asyncio.run(relay(raw))

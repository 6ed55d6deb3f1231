"""Just enough HTTP/1.1 for the proxies: read a head, relay a body in its own framing.

Bodies are relayed chunk by chunk as they arrive (never buffered whole); an optional tap
sees the decoded payload bytes (for usage metering). All functions are coroutines on the
proxy loop and raise :class:`HttpError` (bad framing) or OSError/IncompleteReadError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024

Tap = Callable[[bytes], None]
Progress = Callable[[], None]
HEX = frozenset("0123456789abcdefABCDEF")


class HttpError(Exception):
    pass


class BodyTooLarge(HttpError):
    """A body went past the limit its reader set."""


@dataclass
class Head:
    start: str  # "POST /v1/messages HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def without(self, *names: str) -> list[tuple[str, str]]:
        drop = {n.lower() for n in names}
        return [(k, v) for k, v in self.headers if k.lower() not in drop]

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.get("transfer-encoding") or "").lower()

    @property
    def length(self) -> int | None:
        value = self.get("content-length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise HttpError(f"bad content-length {value!r}")
        return int(value)


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next head, or None at a clean EOF before any byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise HttpError("connection closed in the middle of a head") from None
    except asyncio.LimitOverrunError:
        raise HttpError("head too large") from None
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return Head(lines[0], headers)


def check_request_framing(head: Head) -> None:
    """Refuse framings two parsers could read differently (request smuggling): a
    transfer-encoding other than exactly ``chunked``, or one together with a content-length."""
    te = head.get("transfer-encoding")
    if te is not None and te.strip().lower() != "chunked":
        raise HttpError(f"unsupported transfer-encoding {te[:40]!r} (only chunked)")
    if te is not None and head.get("content-length") is not None:
        raise HttpError("both transfer-encoding and content-length")
    head.length  # noqa: B018 - raises HttpError on a malformed content-length


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line; strict (hex digits only, extensions dropped)."""
    digits = line.split(b";", 1)[0].strip().decode("latin-1")
    if not digits or len(digits) > 15 or not set(digits) <= HEX:
        raise HttpError("bad chunk size")
    return int(digits, 16)


def encode_head(start: str, headers: list[tuple[str, str]]) -> bytes:
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise HttpError("header with a line break")
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")


async def relay_body(head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     tap: Tap | None = None, until_eof: bool = False, progress: Progress | None = None,
                     first: bytes = b"") -> None:
    """Copy the body that follows ``head`` (chunked, by length, or to EOF for responses).

    ``tap`` sees each decoded piece before it is written; ``progress`` is called each time
    bytes moved (the idle timeout's clock) and may raise to stop the relay there, between
    two pieces. Chunk size lines are re-encoded canonically, so what the next hop parses is
    what this one parsed. ``first`` (a reply's head) goes out with the body's first piece.
    What arrived together goes out together (:class:`Batched`): every piece is written, and
    the pieces held for a batch go out before this returns or raises."""
    out = Batched(writer)
    out.write(first)
    try:
        if head.chunked:
            await _relay_chunks(reader, out, writer, tap, progress)
            return
        length = head.length
        if length is None and not until_eof:
            return
        left = length if length is not None else -1
        while left != 0:
            data = await reader.read(READ_CHUNK if left < 0 else min(left, READ_CHUNK))
            if not data:
                if left > 0:
                    raise HttpError("connection closed in the middle of a body")
                return
            if tap:
                tap(data)
            out.write(data)
            out.flush()
            await writer.drain()
            if progress:
                progress()
            if left > 0:
                left -= len(data)
    finally:
        out.flush()


async def _relay_chunks(reader: asyncio.StreamReader, out: Batched, writer: asyncio.StreamWriter,
                        tap: Tap | None, progress: Progress | None) -> None:
    while True:
        size = chunk_size(await reader.readuntil(b"\r\n"))
        if progress:
            progress()
        if size == 0:
            out.write(b"0\r\n")
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                out.write(trailer)
            out.write(b"\r\n")
            out.flush()
            await writer.drain()
            return
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise HttpError("chunk not followed by CRLF")
        if tap:
            tap(data[:-2])
        out.write(b"%x\r\n%s" % (size, data))
        await writer.drain()  # waits only while the client's buffer is full (what was written)
        if progress:
            progress()


class Batched:
    """Writes made before the loop next runs its callbacks go out as one write, one send.

    A relay reads what is already buffered without yielding to the loop, so the pieces an
    upstream sent together (several SSE events in one segment) reach the client together,
    as they would without the proxy, instead of one send and one wake-up of the client per
    piece; a piece that arrived alone is written as soon as the relay waits for the next.
    The pieces held are bounded by what the reader had buffered."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._parts: list[bytes] = []
        self._soon: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._parts.append(data)
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is held now (idempotent)."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._parts:
            data = b"".join(self._parts)
            self._parts.clear()
            self._writer.write(data)


async def read_body(head: Head, reader: asyncio.StreamReader, limit: int, until_eof: bool = False,
                    progress: Progress | None = None) -> bytes:
    """The whole decoded body, for bodies small enough to hold; BodyTooLarge past ``limit`` bytes."""
    out = bytearray()

    def take(data: bytes) -> None:
        if len(out) + len(data) > limit:
            raise BodyTooLarge(f"body larger than {limit} bytes")
        out.extend(data)

    sink = _Sink()
    await relay_body(head, reader, sink, tap=take, until_eof=until_eof, progress=progress)  # type: ignore[arg-type]
    return bytes(out)


class _Sink:
    """A writer that discards: lets :func:`read_body` reuse the relay's framing."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

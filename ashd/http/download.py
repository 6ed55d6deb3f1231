"""Sending file bytes: chunked from a worker thread, ``await flush()`` per chunk (backpressure),
with download headers that stop browsers from rendering or sniffing what an agent wrote. A
client that does not take one piece (:data:`CHUNK`) within :data:`STALL_S` is cut off, so a
download never holds its file (a workspace bundle's temporary file, its tenant's bundle slot)
for as long as TCP waits on a client that stopped reading."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
from typing import BinaryIO
from urllib.parse import quote

import tornado.http1connection
import tornado.iostream

from ashd.errors import PayloadTooLarge
from ashd.files.live import Readable
from ashd.http.base import ApiHandler

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
STALL_S = 300.0  # a client that takes no piece in this long (< 1 KiB/s) is cut off
MAX_RAW_BYTES = 100 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''percent-encoded`` (RFC 6266)."""
    ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename) or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def content_type(filename: str, given: str | None = None) -> str:
    """A well-formed media type: ``given`` if it is one, else a guess from the name."""
    if given and _TOKEN.match(given):
        return given
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a daemon-owned file for reading (no symlink at the last component)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


async def send_file(handler: ApiHandler, f: Readable, size: int, filename: str,
                    mime: str | None = None, extra: dict[str, str] | None = None) -> None:
    """Stream ``f`` (closed here) as the response body. Blocking reads run on the reader pool.

    A client that goes away mid-download ends the stream quietly.
    """
    offload = handler.ctx.offload
    try:
        handler.set_header("Content-Type", content_type(filename, mime))
        handler.set_header("Content-Length", str(size))
        handler.set_header("Content-Disposition", content_disposition(filename))
        handler.set_header("X-Content-Type-Options", "nosniff")
        for name, value in (extra or {}).items():
            handler.set_header(name, value)
        left = size
        while left > 0:
            chunk = await offload.read(f.read, min(CHUNK, left))
            if not chunk:  # the file shrank under us: pad, the length is promised
                chunk = b"\0" * min(CHUNK, left)
            chunk = chunk[:left]
            left -= len(chunk)
            handler.write(chunk)
            await _flushed(handler)
        handler.finish()
    except tornado.iostream.StreamClosedError:
        log.debug("%s: client went away during the download", handler.request.path)
    finally:
        await offload.read(f.close)


async def _flushed(handler: ApiHandler) -> None:
    """Flush. Raises StreamClosedError if the client went away, or did not take the piece
    within STALL_S (its connection is closed then)."""
    flushing = handler.flush()
    done, _ = await asyncio.wait([flushing], timeout=STALL_S)
    if not done:
        log.info("%s: the client took no piece in %g s; the download is cut off", handler.request.path, STALL_S)
        connection = handler.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            connection.stream.close()  # ends the pending write (the connection's own close drops it)
        raise tornado.iostream.StreamClosedError()
    await flushing


async def answer_file(handler: ApiHandler, f: Readable, size: int, path: str, fmt: str,
                      raw_hint: str = "", **shown: str) -> None:
    """Answer with an opened file (closed here): ``raw`` bytes up to MAX_RAW_BYTES, or Ash's
    ``{path, content, size, **shown}`` up to MAX_JSON_BYTES (UTF-8, invalid bytes replaced).
    ``shown`` also goes out as ``X-Ash-<Name>`` headers on raw answers. Raises
    PayloadTooLarge, with ``raw_hint`` appended for a raw file over its limit."""
    limit = MAX_JSON_BYTES if fmt == "json" else MAX_RAW_BYTES
    if size > limit:
        await handler.ctx.offload.read(f.close)
        hint = "; use format=raw" if fmt == "json" else raw_hint
        raise PayloadTooLarge(f"{path} is {size} bytes, over the {limit >> 20} MB limit{hint}")
    if fmt == "raw":
        extra = {f"X-Ash-{name.capitalize()}": value for name, value in shown.items()}
        await send_file(handler, f, size, path.rsplit("/", 1)[-1], extra=extra)
        return
    try:
        data = await handler.ctx.offload.read(f.read, size + 1)
    finally:
        await handler.ctx.offload.read(f.close)
    handler.send_json({"path": path, "content": data.decode("utf-8", errors="replace"), "size": len(data),
                       **shown})

"""HTTP/1.1 over asyncio streams for the async client: standard library only.

One connection per request (``Connection: close``), so nothing is shared between
calls and any number may run concurrently on one event loop. Answers may be
``Content-Length``, chunked, or close-delimited. Failures map as in the blocking
transport: non-2xx -> :class:`AshdError`; refused, reset, timed out or cut off ->
:class:`AshdConnectionError`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from ashd import __version__
from ashd.client.errors import AshdConnectionError
from ashd.client.transport import Query, decode_object, describe, error_from_body

T = TypeVar("T")
_MAX_HEADER_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, de-chunked."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await self.reader.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                yield await self.reader.readexactly(size)
                await self.reader.readexactly(2)
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = await self.reader.read(min(left, _READ_SIZE))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                yield data
        else:
            while data := await self.reader.read(_READ_SIZE):
                yield data

    async def body(self) -> bytes:
        return b"".join([part async for part in self.chunks()])

    def close(self) -> None:
        self.writer.close()


class AsyncTransport:
    """Sends JSON requests to one server from an asyncio event loop."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        """Raise :class:`ValueError` if ``base_url`` is not an http(s) URL."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must look like http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._ssl else 80)
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    async def request_json(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                           query: Query | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The decoded JSON object of a 2xx answer; every step bounded by ``timeout``."""
        limit = timeout if timeout is not None else self.timeout
        response = await self._open(method, path, body, query, None, "application/json", limit)
        try:
            raw = await self._guard(response.body(), limit)
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, raw, response.reason)
            return decode_object(response.status, raw)
        finally:
            response.close()

    async def request_bytes(self, method: str, path: str, query: Query | None = None,
                            timeout: float | None = None) -> bytes:
        limit = timeout if timeout is not None else self.timeout
        response = await self._open(method, path, None, query, None, "*/*", limit)
        try:
            raw = await self._guard(response.body(), limit)
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, raw, response.reason)
            return raw
        finally:
            response.close()

    async def stream(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None) -> AsyncGenerator[bytes, None]:
        """The raw bytes of a 2xx answer as they arrive; no read timeout once it started."""
        response = await self._open(method, path, body, None, headers, "text/event-stream", self.timeout)
        try:
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, await self._guard(response.body(), self.timeout),
                                      response.reason)
            chunks = response.chunks()
            while True:
                try:
                    chunk = await self._guard(chunks.__anext__(), None)
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            response.close()

    async def _open(self, method: str, path: str, body: Mapping[str, Any] | None, query: Query | None,
                    extra: Mapping[str, str] | None, accept: str, timeout: float) -> _Response:
        url = self._prefix + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        payload = json.dumps(body).encode() if body is not None else b""
        headers = {"Host": f"{self._host}:{self._port}", "Accept": accept, "Connection": "close",
                   "User-Agent": f"ashd-client/{__version__}", "Content-Length": str(len(payload)),
                   **({"Content-Type": "application/json"} if body is not None else {}),
                   **({"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}),
                   **(extra or {})}
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        reader, writer = await self._guard(
            asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=_MAX_HEADER_BYTES), timeout)
        try:
            writer.write(head.encode("latin-1") + payload)
            await self._guard(writer.drain(), timeout)
            return await self._guard(_read_head(reader, writer), timeout)
        except BaseException:
            writer.close()
            raise

    async def _guard(self, step: Awaitable[T], timeout: float | None) -> T:
        try:
            return await asyncio.wait_for(step, timeout)
        except TimeoutError:
            raise AshdConnectionError(f"timed out waiting for {self.base_url}") from None
        except asyncio.IncompleteReadError:
            raise AshdConnectionError(f"{self.base_url} closed the connection mid-answer") from None
        except (OSError, ValueError) as exc:  # ValueError: a malformed status line or chunk size
            raise AshdConnectionError(f"cannot talk to {self.base_url}: {describe(exc)}") from exc


async def _read_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Response:
    status_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while line := (await reader.readline()).decode("latin-1").rstrip("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return _Response(int(code), reason, headers, reader, writer)

"""HTTP transport for the ashd client, on :mod:`http.client` only.

One connection per request: nothing is shared between calls, so a
:class:`Transport` may be used from several threads at once. Every call blocks
the calling thread. Failures are mapped once, here:

* a non-2xx answer becomes :class:`AshdError` carrying the server's ``error``;
* refused/reset/timed-out connections become :class:`AshdConnectionError`.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from ashd import __version__
from ashd.client.errors import AshdConnectionError, AshdError

Query = Mapping[str, str | int | None]
Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) while a body is sent or received."""
T = TypeVar("T")
_STREAM_READ_SIZE = 64 * 1024
_BODY_CHUNK = 256 * 1024


class Transport:
    """Sends JSON requests to one server and decodes the answers."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        """Raise :class:`ValueError` if ``base_url`` is not an http(s) URL."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must look like http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def request_json(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Query | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the decoded JSON object of a 2xx answer.

        Blocks for at most ``timeout`` (default: the transport's) per socket
        operation. Raises :class:`AshdError` or :class:`AshdConnectionError`.
        """
        conn = self._connect(timeout if timeout is not None else self.timeout)
        try:
            response = self._send(conn, method, path, body, query, "application/json", progress=progress)
            raw = self._guard(response.read)
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, raw, response.reason)
            return decode_object(response.status, raw)
        finally:
            conn.close()

    def request_bytes(
        self,
        method: str,
        path: str,
        query: Query | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """Send one request and return the raw body of a 2xx answer (a file, a bundle)."""
        conn = self._connect(timeout if timeout is not None else self.timeout)
        try:
            response = self._send(conn, method, path, None, query, "*/*")
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, self._guard(response.read), response.reason)
            length = response.getheader("Content-Length")
            total = int(length) if length and length.isdigit() else None
            parts: list[bytes] = []
            done = 0
            while chunk := self._guard(lambda: response.read1(_STREAM_READ_SIZE)):
                parts.append(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            return b"".join(parts)
        finally:
            conn.close()

    def stream(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Generator[bytes, None, None]:
        """Send one request and yield the raw bytes of its answer as they arrive.

        The transport's timeout bounds connecting and waiting for the status
        line; once a 2xx answer starts, reads wait without limit (a turn may
        think for minutes). A non-2xx answer raises :class:`AshdError` before
        anything is yielded. Closing the generator closes the connection.
        """
        conn = self._connect(self.timeout)
        response: http.client.HTTPResponse | None = None
        try:
            response = self._send(conn, method, path, body, None, "text/event-stream", headers)
            if not 200 <= response.status < 300:
                raise error_from_body(response.status, self._guard(response.read), response.reason)
            while chunk := self._guard(lambda: response.read1(_STREAM_READ_SIZE)):
                yield chunk
        finally:
            if response is not None:
                response.close()
            conn.close()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        query: Query | None,
        accept: str,
        extra_headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> http.client.HTTPResponse:
        url = self._prefix + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": accept, "User-Agent": f"ashd-client/{__version__}", **(extra_headers or {})}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"

        def exchange() -> http.client.HTTPResponse:
            if payload is None or progress is None:
                conn.request(method, url, body=payload, headers=headers)
            else:
                _send_with_progress(conn, method, url, headers, payload, progress)
            sock = conn.sock  # kept: getresponse() may detach it from conn
            response = conn.getresponse()
            if accept == "text/event-stream" and sock is not None:
                sock.settimeout(None)
            return response

        return self._guard(exchange)

    def _guard(self, call: Callable[[], T]) -> T:
        """Run ``call()``, turning transport failures into AshdConnectionError."""
        try:
            return call()
        except TimeoutError:
            raise AshdConnectionError(f"timed out waiting for {self.base_url}") from None
        except http.client.IncompleteRead:
            raise AshdConnectionError(f"{self.base_url} closed the connection mid-answer") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = describe(exc)
            raise AshdConnectionError(f"cannot connect to {self.base_url}: {reason}") from exc


def _send_with_progress(conn: http.client.HTTPConnection, method: str, url: str, headers: dict[str, str],
                        payload: bytes, progress: Progress) -> None:
    conn.putrequest(method, url, skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(len(payload))}.items():
        conn.putheader(name, value)
    conn.endheaders()
    view = memoryview(payload)
    for start in range(0, len(payload), _BODY_CHUNK):
        conn.send(view[start:start + _BODY_CHUNK])
        progress(min(start + _BODY_CHUNK, len(payload)), len(payload))


def describe(exc: BaseException) -> str:
    """Short human text for a socket-level failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is ashd running?)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def error_from_body(status: int, raw: bytes, reason: str) -> AshdError:
    """Build the AshdError for a non-2xx answer from its body.

    Prefers Ash's ``{"error": ...}``; appends a framework-style ``message``
    when it adds detail (e.g. rate-limit answers); falls back to the text.
    """
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
        detail = body.get("message")
        if isinstance(detail, str) and detail and detail != message:
            message = f"{message}: {detail}"
        return AshdError(status, message)
    text = raw.decode("utf-8", "replace").strip()
    return AshdError(status, text[:200] or reason or "HTTP error")


def decode_object(status: int, raw: bytes) -> dict[str, Any]:
    """Decode a 2xx body that must be a JSON object; AshdError otherwise."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AshdError(status, "the server answered with something other than a JSON object")
    return body

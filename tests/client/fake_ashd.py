"""A tiny real HTTP server standing in for ashd in client and CLI tests.

It serves canned JSON answers and scripted SSE streams. A script is a list of
steps: ``bytes`` are written and flushed at once; a ``threading.Event`` makes
the handler wait until the test sets it, so tests control exactly when each
frame reaches the client (no sleeps). ``close()`` releases every waiting step.

Loaded by path from ``tests/client/conftest.py`` and ``tests/cli/conftest.py``
(so it works whatever pytest import mode the project picks).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Step = bytes | threading.Event
GATE_TIMEOUT = 10.0


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE frame as ashd writes it."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    steps: list[Step] | None = None
    chunked: bool = True
    hold: threading.Event | None = None


@dataclass
class FakeAshd:
    """Routes are keyed by ``(method, path)``; unknown routes answer 404."""

    routes: dict[tuple[str, str], Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    request_seen: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: list[threading.Event] = []
        self._server = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        for gate in self._gates:
            gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=GATE_TIMEOUT)

    def json(
        self,
        method: str,
        path: str,
        body: Any,
        status: int = 200,
        hold: threading.Event | None = None,
    ) -> None:
        """Answer with JSON; with ``hold``, only once the test sets it."""
        self._gates += [hold] if hold else []
        self.routes[(method, path)] = Reply(status, body, hold=hold)

    def error(self, method: str, path: str, status: int, message: str) -> None:
        self.json(method, path, {"error": message, "statusCode": status}, status)

    def raw(self, method: str, path: str, status: int, raw: bytes, content_type: str) -> None:
        self.routes[(method, path)] = Reply(status, raw=raw, content_type=content_type)

    def sse(self, method: str, path: str, steps: list[Step], chunked: bool = True) -> None:
        self._gates += [s for s in steps if isinstance(s, threading.Event)]
        self.routes[(method, path)] = Reply(steps=steps, chunked=chunked)

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)
        self.request_seen.set()

    def last(self) -> Recorded:
        with self._lock:
            return self.requests[-1]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-stream are part of the tests


def _make_handler(fake: FakeAshd) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        do_POST = do_DELETE = do_PATCH = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.record(Recorded(self.command, parts.path, parts.query, headers, body))
            reply = fake.routes.get((self.command, parts.path))
            if reply is None:
                reply = Reply(404, {"error": f"Route {parts.path} not found", "statusCode": 404})
            if reply.hold is not None and not reply.hold.wait(GATE_TIMEOUT):
                self.close_connection = True
                return
            if reply.steps is not None:
                self._stream(reply)
            else:
                self._answer(reply)

        def _answer(self, reply: Reply) -> None:
            payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for step in reply.steps or []:
                if isinstance(step, threading.Event):
                    if not step.wait(GATE_TIMEOUT):
                        self.close_connection = True
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step) if reply.chunked else step)
                self.wfile.flush()
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler

"""The model proxy: the only holder of the real model credential.

Each sandbox gets its own listener (bound inside its network namespace) and its own random
token, which the CLI inside uses as its API key. Per request the proxy:

1. refuses anything but the Messages API routes (nothing reaches the upstream);
2. checks the token with ``hmac.compare_digest`` (401 otherwise, before the secret is touched);
3. refuses when the session's ``maxBudgetUsd`` is spent (400, Anthropic's error shape);
4. strips ``x-api-key``, ``authorization``, ``proxy-authorization`` and hop-by-hop headers,
   injects the session's own stored credential if it has one (``Gate.upstream_key``), else
   the daemon's real key (or bearer token), and streams the request to the upstream and the
   response back without buffering (one request per connection: ``Connection: close``);
5. meters the response's usage and reports it through ``on_usage`` (proxy loop thread;
   must not block - hand off to a thread).

Register/unregister are called from actor threads; serving runs on the proxy loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ashd.config import Secret
from ashd.proxy import http1
from ashd.proxy.loop import ProxyLoop
from ashd.proxy.meter import Meter, Usage

log = logging.getLogger(__name__)

ALLOWED_PATHS = ("/v1/messages", "/v1/models", "/api/hello")
STRIP = ("x-api-key", "authorization", "proxy-authorization", "connection", "keep-alive", "host",
         "proxy-connection", "te", "upgrade", "accept-encoding")
UPSTREAM_TIMEOUT_S = 30.0


@dataclass
class Gate:
    """One sandbox's view of the proxy."""

    session_id: str
    tenant_id: str
    agent_name: str
    token: str
    budget_usd: float | None
    spent_usd: float = 0.0
    requests: int = 0
    upstream_key: Secret | None = None  # the session's stored credential; None: the daemon's key


OnUsage = Callable[[Gate, Usage], None]


class ModelProxy:
    def __init__(self, loop: ProxyLoop, upstream: str, api_key: str, auth_token: str, on_usage: OnUsage) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"model upstream must be an http(s) URL, got {upstream!r}")
        self._loop = loop
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._prefix = parts.path.rstrip("/")
        self._cred = ("authorization", f"Bearer {auth_token}") if auth_token else ("x-api-key", api_key)
        self._on_usage = on_usage
        self._lock = threading.Lock()
        self._servers: dict[str, asyncio.Server] = {}
        self._handlers: set[asyncio.Task[object]] = set()  # proxy loop only
        self.gates: dict[str, Gate] = {}

    def register(self, sandbox_id: str, sock: object, gate_args: dict[str, object]) -> str:
        """Serve ``sock`` (listening, non-blocking) for one sandbox; returns its new token."""
        gate = Gate(token="ashd-sess-" + secrets.token_urlsafe(32), **gate_args)  # type: ignore[arg-type]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._hold(asyncio.current_task())
            await self._handle(gate, reader, writer)

        server = self._loop.serve(sock, handle)  # type: ignore[arg-type]
        with self._lock:
            self._servers[sandbox_id] = server
            self.gates[sandbox_id] = gate
        return gate.token

    def unregister(self, sandbox_id: str) -> None:
        """Close the listener and revoke the token. Idempotent; never raises."""
        with self._lock:
            server = self._servers.pop(sandbox_id, None)
            gate = self.gates.pop(sandbox_id, None)
        if gate is not None:
            gate.token = secrets.token_urlsafe(32)  # in-flight connections fail their next check
        if server is not None:
            self._loop.close_server(server)

    def _hold(self, task: asyncio.Task[object] | None) -> None:
        """Keep a strong reference to a connection's task until it ends (proxy loop thread).

        asyncio drops its own reference when the client disconnects (an interrupted turn),
        and a task still waiting for the upstream would be garbage collected mid-await
        ("Task was destroyed but it is pending!"). Held, it notices the closed client at its
        next write and ends.
        """
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, gate: Gate, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await http1.read_head(reader)
            if head is not None:
                await self._request(gate, head, reader, writer)
        except (http1.HttpError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("model proxy: session %s: %s", gate.session_id, exc)
        finally:
            writer.close()

    async def _request(self, gate: Gate, head: http1.Head, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        method, _, rest = head.start.partition(" ")
        target = rest.rpartition(" ")[0]
        path = target.split("?", 1)[0]
        if not target.startswith("/") or not any(path == p or path.startswith(p + "/") for p in ALLOWED_PATHS):
            return await _reply(writer, 403, "permission_error", f"{path} is not served by the ashd model proxy")
        presented = head.get("x-api-key") or (head.get("authorization") or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), gate.token.encode()):
            return await _reply(writer, 401, "authentication_error", "invalid session token")
        if gate.budget_usd is not None and gate.spent_usd >= gate.budget_usd:
            return await _reply(writer, 400, "invalid_request_error",
                                f"session budget exhausted: spent ${gate.spent_usd:.4f} of ${gate.budget_usd:.4f} "
                                "(maxBudgetUsd)")
        gate.requests += 1
        up_reader, up_writer = await asyncio.wait_for(self._connect(), UPSTREAM_TIMEOUT_S)
        try:
            cred = ("x-api-key", gate.upstream_key.reveal()) if gate.upstream_key is not None else self._cred
            headers = [*head.without(*STRIP), ("host", self._host_header()), cred,
                       ("accept-encoding", "identity"), ("connection", "close")]
            up_writer.write(http1.encode_head(f"{method} {self._prefix}{target} HTTP/1.1", headers))
            await http1.relay_body(head, reader, up_writer)
            resp = await http1.read_head(up_reader)
            if resp is None:
                return await _reply(writer, 502, "api_error", "the model upstream closed the connection")
            streaming = "text/event-stream" in (resp.get("content-type") or "")
            meter = Meter(streaming) if method == "POST" and path == "/v1/messages" else None
            writer.write(http1.encode_head(resp.start, [*resp.without("connection", "keep-alive"),
                                                        ("connection", "close")]))
            await http1.relay_body(resp, up_reader, writer, tap=meter.feed if meter else None, until_eof=True)
        finally:
            up_writer.close()
        usage = meter.result() if meter else None
        if usage is not None:
            gate.spent_usd += usage.cost_usd
            self._on_usage(gate, usage)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = ssl.create_default_context() if self._tls else None
        return await asyncio.open_connection(self._host, self._port, ssl=context, limit=256 * 1024)

    def _host_header(self) -> str:
        default = 443 if self._tls else 80
        return self._host if self._port == default else f"{self._host}:{self._port}"


async def _reply(writer: asyncio.StreamWriter, status: int, kind: str, message: str) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    writer.write(http1.encode_head(f"HTTP/1.1 {status} ashd", [
        ("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close"),
        ("x-should-retry", "false")]) + body)
    await writer.drain()

"""The model proxy: the only holder of the real model credential.

Each sandbox gets its own listener (bound inside its network namespace) and its own random
token, which the CLI inside uses as its API key. Per connection, then per request:

0. a sandbox holds at most ``max_connections`` open connections (more are answered 429 and
   closed at once) and a connection that moves no byte for the idle timeout is closed
   (:mod:`ashd.proxy.connections`);
1. refuses anything but exactly the Messages API routes (:mod:`ashd.proxy.route`; nothing
   reaches the upstream), answering the CLI's ``/api/hello`` probe itself;
2. checks the token with ``hmac.compare_digest`` (401 otherwise, before the secret is touched);
3. refuses when the session's ``maxBudgetUsd`` is spent (400, Anthropic's error shape);
3b. reads the body whole (at most ``proxy.max_request_bytes``, else 413) and refuses what
   asks the provider to act outside the sandbox - server tools, ``mcp_servers``,
   ``container``, stored-file and URL sources - unless the operator allowed it by name
   (:mod:`ashd.proxy.body`; 400 naming the field); betas enabling those are dropped;
4. strips ``x-api-key``, ``authorization``, ``proxy-authorization`` and hop-by-hop headers,
   injects the session's own stored credential if it has one (``Gate.upstream_key``), else
   the daemon's real key (or bearer token), sends the checked body with its length over a
   kept-alive upstream connection (:mod:`ashd.proxy.upstream`), and streams the response back
   without buffering. A connection from the CLI is kept alive for its next request when the
   reply was relayed whole in its own framing; refusals and cut replies close it;
5. meters a streamed reply as it passes: ``Gate.spent_usd`` follows every relayed piece, a
   reply that crosses the budget is ended with an SSE ``error`` event (or cut) and its
   upstream connection closed, and whatever was relayed is charged however the stream ends
   (client gone, upstream gone, budget, idle). A non-streamed reply is read whole (it was
   generated whole), charged, then sent. ``on_usage`` reports each charged reply (proxy loop
   thread; must not block - hand off to a thread).

Register/unregister are called from actor threads; serving runs on the proxy loop. A
sandbox's token and budget are its :class:`~ashd.proxy.gate.Gate`; the replies the proxy
writes itself (errors, the probe's answer, a stopped stream's end) are :mod:`ashd.proxy.replies`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from ashd.body_policy import BodyPolicy
from ashd.proxy import http1
from ashd.proxy.body import BodyRefused, check_body, filter_betas, too_large
from ashd.proxy.connections import ConnectionTable, Slot
from ashd.proxy.gate import Gate, budget_message, charge, over_budget
from ashd.proxy.loop import ProxyLoop
from ashd.proxy.meter import MAX_JSON_BYTES, Meter, Usage
from ashd.proxy.replies import answer_hello, client_head, end_stream, ends_by_framing, refuse_connection, reply
from ashd.proxy.route import MESSAGES, Route, RouteRefused, route
from ashd.proxy.upstream import Upstream, UpstreamPool

log = logging.getLogger(__name__)

STRIP = ("x-api-key", "authorization", "proxy-authorization", "connection", "keep-alive", "host",
         "proxy-connection", "te", "upgrade", "accept-encoding", "expect", "content-length", "transfer-encoding",
         "anthropic-beta")
UPSTREAM_TIMEOUT_S = 30.0


OnUsage = Callable[[Gate, Usage], None]


class BudgetCrossed(Exception):
    pass


class ModelProxy:
    def __init__(self, loop: ProxyLoop, upstream: str, api_key: str, auth_token: str, on_usage: OnUsage,
                 max_connections: int = 32, idle_timeout_s: float = 600.0,
                 body_policy: BodyPolicy | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"model upstream must be an http(s) URL, got {upstream!r}")
        self._loop = loop
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._upstream = UpstreamPool(self._host, self._port, self._tls)
        self._prefix = parts.path.rstrip("/")
        self._cred = ("authorization", f"Bearer {auth_token}") if auth_token else ("x-api-key", api_key)
        self._on_usage = on_usage
        self._policy = body_policy or BodyPolicy()
        self._lock = threading.Lock()
        self._servers: dict[str, asyncio.Server] = {}
        self._handlers: set[asyncio.Task[object]] = set()  # proxy loop only
        self.connections = ConnectionTable("model", max_connections, idle_timeout_s)
        self.gates: dict[str, Gate] = {}

    def register(self, sandbox_id: str, sock: object, gate_args: dict[str, object]) -> str:
        """Serve ``sock`` (listening, non-blocking) for one sandbox; returns its new token."""
        gate = Gate(token="ashd-sess-" + secrets.token_urlsafe(32), **gate_args)  # type: ignore[arg-type]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._hold(asyncio.current_task())
            await self.connections.serve(sandbox_id, writer, lambda slot: self._handle(gate, slot, reader, writer),
                                         refuse_connection)

        server = self._loop.serve(sock, handle)  # type: ignore[arg-type]
        with self._lock:
            self._servers[sandbox_id] = server
            self.gates[sandbox_id] = gate
        return gate.token

    def limit_turn(self, sandbox_id: str, budget_usd: float | None) -> None:
        """Bind a turn's own budget (None: none) from now on, on top of the session's.
        Any thread; a sandbox this proxy does not serve is ignored."""
        with self._lock:
            gate = self.gates.get(sandbox_id)
            if gate is not None:
                gate.turn_budget_usd, gate.turn_start_usd = budget_usd, gate.spent_usd

    def unregister(self, sandbox_id: str) -> None:
        """Close the listener and every open connection, and revoke the token. Idempotent;
        never raises."""
        with self._lock:
            server = self._servers.pop(sandbox_id, None)
            gate = self.gates.pop(sandbox_id, None)
        if gate is not None:
            gate.token = secrets.token_urlsafe(32)  # in-flight connections fail their next check
        if server is not None:
            self._loop.close_server(server)
        self._loop.run_quietly(lambda: self._closed(sandbox_id))

    def _closed(self, sandbox_id: str) -> None:
        """Proxy loop: close the sandbox's connections, and the kept upstream ones once no
        sandbox is served (nothing holds a connection past the last sandbox)."""
        self.connections.close_sandbox(sandbox_id)
        with self._lock:
            idle = not self.gates
        if idle:
            self._upstream.close()

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

    async def _handle(self, gate: Gate, slot: Slot, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            while (head := await http1.read_head(reader)) is not None:
                slot.heard()
                if not await self._request(gate, slot, head, reader, writer):
                    break
        except (http1.HttpError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("model proxy: session %s: %s", gate.session_id, exc)
        finally:
            writer.close()

    async def _request(self, gate: Gate, slot: Slot, head: http1.Head, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection may carry the client's next one."""
        try:
            where = route(head.start)
            http1.check_request_framing(head)
        except RouteRefused as refused:
            kind = "not_found_error" if refused.status == 404 else "invalid_request_error"
            return await reply(writer, refused.status, kind, refused.message)
        except http1.HttpError as exc:
            return await reply(writer, 400, "invalid_request_error", str(exc))
        if where.local:
            return await answer_hello(writer, where)
        presented = head.get("x-api-key") or (head.get("authorization") or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), gate.token.encode()):
            return await reply(writer, 401, "authentication_error", "invalid session token")
        if over_budget(gate):
            return await reply(writer, 400, "invalid_request_error", budget_message(gate))
        gate.requests += 1
        wants_close = "close" in (head.get("connection") or "").lower()
        return await self._forward(gate, slot, head, where, reader, writer, not wants_close)

    async def _checked_body(self, gate: Gate, slot: Slot, head: http1.Head, reader: asyncio.StreamReader) -> bytes:
        """The body, read whole and checked (:mod:`ashd.proxy.body`), to forward as is. Raises BodyRefused.

        A sandbox reads at most READING_PER_SANDBOX bodies at once (others wait their turn): an
        agent dripping many large bodies holds at most that many times max_bytes of ashd's memory."""
        if (head.length or 0) > self._policy.max_bytes:
            raise too_large(self._policy)  # refused before reading it
        try:
            async with gate.reading:
                raw = await http1.read_body(head, reader, self._policy.max_bytes, progress=slot.touch)
            check_body(raw, self._policy, gate.checked)
            return raw
        except http1.BodyTooLarge:
            raise too_large(self._policy) from None
        except BodyRefused as refused:
            if refused.feature is not None and refused.feature not in gate.refused:
                gate.refused.add(refused.feature)
                log.warning("model proxy: session %s: refused a request using %r (%s); further refusals of it "
                            "in this session are not logged", gate.session_id, refused.feature, refused.message)
            raise

    async def _forward(self, gate: Gate, slot: Slot, head: http1.Head, where: Route,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_keep: bool) -> bool:
        """Relay one checked request upstream and its reply back. True when the client's
        connection may carry its next request: the reply went back whole in its own framing
        (the upstream connection is then kept too) and the client did not ask to close."""
        try:
            body = await self._checked_body(gate, slot, head, reader)
        except BodyRefused as refused:
            return await reply(writer, refused.status, refused.kind, refused.message)
        cred = ("x-api-key", gate.upstream_key.reveal()) if gate.upstream_key is not None else self._cred
        headers = [*head.without(*STRIP), ("host", self._host_header()), cred,
                   ("accept-encoding", "identity"), ("connection", "keep-alive"), ("content-length", str(len(body)))]
        betas = filter_betas((v for k, v in head.headers if k.lower() == "anthropic-beta"), self._policy)
        if betas is not None:
            headers.append(("anthropic-beta", betas))
        request = http1.encode_head(f"{where.method} {self._prefix}{where.target} HTTP/1.1", headers) + body
        del body  # only the encoded request is held, until the reply's head arrives
        conn, resp = await self._exchange(slot, request)
        whole = False
        try:
            if resp is None:
                return await reply(writer, 502, "api_error", "the model upstream closed the connection")
            slot.touch()
            framed = ends_by_framing(resp)
            keep = framed and client_keep
            if where.path != MESSAGES:
                await http1.relay_body(resp, conn.reader, writer, until_eof=True, progress=slot.touch,
                                       first=client_head(resp, keep))
                whole = framed
            elif "text/event-stream" in (resp.get("content-type") or ""):
                whole = await self._relay_stream(gate, slot, resp, conn.reader, writer, keep) and framed
            else:
                await self._relay_whole(gate, slot, resp, conn.reader, writer, keep)
                whole = framed
            return whole and keep
        finally:
            slot.extra.remove(conn.writer)
            if whole:
                self._upstream.put(conn)
            else:
                conn.writer.close()

    async def _exchange(self, slot: Slot, request: bytes) -> tuple[Upstream, http1.Head | None]:
        """Send ``request`` and read the reply's head. A kept connection the upstream closed
        while idle fails before any reply byte: the request is sent once more on a new one."""
        conn = await asyncio.wait_for(self._upstream.get(), UPSTREAM_TIMEOUT_S)
        slot.extra.append(conn.writer)  # closed with the client's connection
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            resp = await http1.read_head(conn.reader)
            if resp is not None or not conn.reused:
                return conn, resp
        except (OSError, http1.HttpError):
            if not conn.reused:
                slot.extra.remove(conn.writer)
                conn.writer.close()
                raise
        slot.extra.remove(conn.writer)
        conn.writer.close()
        conn = await asyncio.wait_for(self._upstream.fresh(), UPSTREAM_TIMEOUT_S)
        slot.extra.append(conn.writer)
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            return conn, await http1.read_head(conn.reader)
        except BaseException:
            slot.extra.remove(conn.writer)
            conn.writer.close()
            raise

    async def _relay_stream(self, gate: Gate, slot: Slot, resp: http1.Head, up_reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, keep: bool) -> bool:
        """Relay an SSE reply, charging as it goes; stop it where it crosses the budget.
        True when it was relayed whole."""
        meter = Meter(streaming=True)
        charged = 0.0

        def progress() -> None:
            nonlocal charged
            slot.touch()
            charged = charge(gate, meter.cost_so_far(), charged)
            if over_budget(gate) and not meter.stopped:
                raise BudgetCrossed

        try:
            await http1.relay_body(resp, up_reader, writer, tap=meter.feed, until_eof=True, progress=progress,
                                   first=client_head(resp, keep))
            return True
        except BudgetCrossed:
            log.info("model proxy: session %s crossed its budget mid-reply; reply stopped (%s)", gate.session_id,
                     budget_message(gate))
            await end_stream(writer, resp, meter, budget_message(gate))
            return False
        finally:
            usage = meter.result()
            charge(gate, usage.cost_usd if usage else 0.0, charged)
            if usage is not None:
                self._on_usage(gate, usage)

    async def _relay_whole(self, gate: Gate, slot: Slot, resp: http1.Head, up_reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, keep: bool) -> None:
        """A non-streamed reply was generated whole: read it, charge it, then send it."""
        body = await http1.read_body(resp, up_reader, MAX_JSON_BYTES, until_eof=True, progress=slot.touch)
        meter = Meter(streaming=False)
        meter.feed(body)
        usage = meter.result()
        if usage is not None:
            charge(gate, usage.cost_usd, 0.0)
            self._on_usage(gate, usage)
        headers = [*resp.without("connection", "keep-alive", "transfer-encoding", "content-length"),
                   ("content-length", str(len(body))), ("connection", "keep-alive" if keep else "close")]
        writer.write(http1.encode_head(resp.start, headers) + body)
        await writer.drain()

    def _host_header(self) -> str:
        default = 443 if self._tls else 80
        return self._host if self._port == default else f"{self._host}:{self._port}"

"""Both ends of the link's WebSocket: the runner's handler and the coordinator's client.

The runner serves ``/runner/link`` (:class:`RunnerLinkHandler`); each coordinator keeps one
:class:`LinkClient` per runner that connects, authenticates (:mod:`ashd.runnerlink.auth`),
serves the link until it drops and reconnects with capped exponential backoff and jitter.
Until both proofs are checked nothing but the handshake is read; a peer that fails it, speaks
out of turn or takes longer than :data:`HANDSHAKE_TIMEOUT_S` is closed at once. WebSocket
pings (both ends) detect a dead peer. Everything here runs on the IOLoop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from tornado import httpclient, websocket

from ashd.runnerlink import auth
from ashd.runnerlink.mux import CONTROL, MAX_MESSAGE_BYTES, Handler, Json, Mux, decode_control, encode_control, unpack
from ashd.wire import protocol

log = logging.getLogger(__name__)

PATH = "/runner/link"
HANDSHAKE_TIMEOUT_S = 10.0
PING_INTERVAL_S = 5.0
PING_TIMEOUT_S = 5.0  # tornado wants it no longer than the interval
AUTH_CLOSE_CODE = 4401  # WebSocket close code for a failed handshake


def read_control(message: str | bytes | None, expect: str) -> Json:
    """A handshake message; raises AuthFailed for anything else (a closed link included)."""
    if not isinstance(message, bytes):
        raise auth.AuthFailed(f"expected the {expect!r} message, the peer sent {type(message).__name__}")
    try:
        cid, payload = unpack(message)
        body = decode_control(payload)
    except protocol.ProtocolError as exc:
        raise auth.AuthFailed(f"bad {expect!r} message: {exc}") from None
    if cid != CONTROL or body["op"] != expect:
        raise auth.AuthFailed(f"expected the {expect!r} message, the peer sent {body['op']!r}")
    return body


# -- runner end -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerEnd:
    """What the runner's handler needs: the secret, who it is, and who serves the link."""

    secret: str
    runner_id: str
    serve: Callable[[Mux], Handler]  # a handler for a new authenticated link (the sandbox host)
    generation: Callable[[], int | None] = lambda: None  # this runner's registry generation, if known
    on_lost: Callable[[Mux], None] = lambda mux: None  # the link closed (the host ends its sandboxes)


class RunnerLinkHandler(websocket.WebSocketHandler):
    """``GET /runner/link`` on the runner's own port (route: ``(PATH, RunnerLinkHandler, {"end": end})``)."""

    def initialize(self, end: RunnerEnd) -> None:
        self._end = end
        self._nonce = auth.nonce()
        self._mux: Mux | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE_BYTES

    @property
    def ping_interval(self) -> float:
        return PING_INTERVAL_S

    @property
    def ping_timeout(self) -> float:
        return PING_TIMEOUT_S

    def check_origin(self, origin: str) -> bool:
        return True  # not a browser endpoint: the handshake authenticates, not the origin

    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self._deadline = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self._refuse, "handshake timed out")
        await self.write_message(encode_control({"op": "hello", "runner": self._end.runner_id, "nonce": self._nonce}),
                                 binary=True)

    async def on_message(self, message: str | bytes) -> None:
        if self._mux is not None:
            if not isinstance(message, bytes):
                return self._refuse("text message on the link")
            try:
                await self._mux.dispatch(message)
            except protocol.ProtocolError as exc:
                self._refuse(f"bad link message: {exc}")
            return None
        try:
            self._mux = await self._accept(read_control(message, "auth"))
        except auth.AuthFailed as exc:
            self._refuse(str(exc))
        return None

    async def _accept(self, body: Json) -> Mux:
        theirs = auth.check_nonce(body.get("nonce"))
        end = self._end
        auth.check(auth.coordinator_proof(end.secret, end.runner_id, self._nonce, theirs), body.get("proof"),
                   "coordinator")
        if self._deadline is not None:
            self._deadline.cancel()
        mux = Mux(self._send, f"coordinator@{self.request.remote_ip}", first_channel=2)
        mux.handler = end.serve(mux)
        await self.write_message(encode_control({
            "op": "welcome", "proof": auth.runner_proof(end.secret, end.runner_id, self._nonce, theirs),
            "generation": end.generation()}), binary=True)
        log.info("runner link from %s authenticated", self.request.remote_ip)
        return mux

    async def _send(self, message: bytes) -> None:
        await self.write_message(message, binary=True)

    def _refuse(self, why: str) -> None:
        log.warning("runner link from %s refused: %s", self.request.remote_ip, why)
        self.close(AUTH_CLOSE_CODE, "refused")

    def on_close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._mux is not None:
            self._mux.lost()
            self._end.on_lost(self._mux)


# -- coordinator end ------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Capped exponential with full jitter in its upper half: [d/2, d), d = min(cap, base*2^n)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return ceiling * (0.5 + rand() / 2)


@dataclass(frozen=True)
class Welcome:
    runner_id: str
    generation: int | None


class LinkClient:
    """The coordinator's end of the link to one runner; reconnects until :meth:`stop`."""

    def __init__(self, url: str, secret: str, runner_id: str, serve: Callable[[Mux], Handler], *,
                 on_up: Callable[[Mux, Welcome], None] = lambda mux, welcome: None,
                 on_down: Callable[[str], None] = lambda why: None,
                 backoff: Backoff = Backoff()) -> None:
        self.url = url
        self._secret = secret
        self.runner_id = runner_id
        self._serve = serve
        self._on_up = on_up
        self._on_down = on_down
        self._backoff = backoff
        self.mux: Mux | None = None
        self.attempts = 0  # failed connects since the last good one
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: websocket.WebSocketClientConnection | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()

    async def wait_up(self, timeout: float) -> Mux:
        """The live link; raises TimeoutError if it is not up within ``timeout``."""
        await asyncio.wait_for(self._up.wait(), timeout)
        assert self.mux is not None
        return self.mux

    async def _run(self) -> None:
        while True:
            why = await self._session()
            self._on_down(why)
            delay = self._backoff.delay(self.attempts)
            self.attempts += 1
            log.info("runner link %s down (%s); reconnecting in %.1fs", self.runner_id, why, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """One connection, from connect to close; why it ended."""
        try:
            self._conn = conn = await websocket.websocket_connect(
                httpclient.HTTPRequest(self.url, connect_timeout=HANDSHAKE_TIMEOUT_S,
                                       request_timeout=HANDSHAKE_TIMEOUT_S),
                ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S, max_message_size=MAX_MESSAGE_BYTES)
        except (TimeoutError, OSError, httpclient.HTTPError) as exc:
            return f"cannot connect to {self.url}: {exc or type(exc).__name__}"
        try:
            mux, welcome = await asyncio.wait_for(self._handshake(conn), HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, auth.AuthFailed, websocket.WebSocketClosedError) as exc:
            conn.close(AUTH_CLOSE_CODE, "refused")
            log.error("runner link %s at %s refused: %s", self.runner_id, self.url, exc or type(exc).__name__)
            return f"handshake failed: {exc or type(exc).__name__}"
        self.attempts = 0
        self.mux = mux
        self._up.set()
        self._on_up(mux, welcome)
        try:
            return await self._read(conn, mux)
        finally:
            self._up.clear()
            self.mux = None
            mux.lost()
            conn.close()

    async def _handshake(self, conn: websocket.WebSocketClientConnection) -> tuple[Mux, Welcome]:
        hello = read_control(await conn.read_message(), "hello")
        theirs = auth.check_nonce(hello.get("nonce"))
        mine = auth.nonce()
        await conn.write_message(encode_control({
            "op": "auth", "nonce": mine,
            "proof": auth.coordinator_proof(self._secret, self.runner_id, theirs, mine)}), binary=True)
        welcome = read_control(await conn.read_message(), "welcome")
        auth.check(auth.runner_proof(self._secret, self.runner_id, theirs, mine), welcome.get("proof"), "runner")
        generation = welcome.get("generation")

        async def send(message: bytes) -> None:
            await conn.write_message(message, binary=True)

        mux = Mux(send, f"runner {self.runner_id}", first_channel=1)
        mux.handler = self._serve(mux)
        return mux, Welcome(self.runner_id, generation if isinstance(generation, int) else None)

    async def _read(self, conn: websocket.WebSocketClientConnection, mux: Mux) -> str:
        while True:
            message = await conn.read_message()
            if message is None:
                return f"closed by the runner ({conn.close_code or 'no code'})"
            if not isinstance(message, bytes):
                return "the runner sent a text message"
            try:
                await mux.dispatch(message)
            except protocol.ProtocolError as exc:
                return f"bad link message: {exc}"

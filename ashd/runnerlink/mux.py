"""Channels over one link: control requests and events on channel 0, relayed bridge frames on
the others. Both ends of a runner link use this class; it runs on the IOLoop (loop thread only).

A link message is a binary WebSocket message: a 4-byte big-endian channel id, then the payload.
On channel 0 the payload is one JSON object: a request ``{op, id, ...}`` answered by
``{op: "reply", id, ok, ...}`` (``error`` when not ok), or an event ``{op, ...}`` with no id.
On a data channel the payload is exactly one NDJSON line of the bridge socket
(:mod:`ashd.wire.protocol`), relayed frame for frame: the link never decodes it.

Backpressure: :meth:`Mux.dispatch` awaits room in a data channel's bounded inbox, and the
transport reads no further message until ``dispatch`` returns (tornado awaits a coroutine
``on_message``; the client loop awaits it), so a slow bridge socket slows its sender instead of
growing a buffer. Requests are served in tasks of their own, so a slow one (a sandbox launch)
never holds up the frames behind it.

Size: no message over :data:`MAX_MESSAGE_BYTES` (a bridge frame and its header) is sent; the
peer's transport would close the link over it. Such a request fails with
:class:`MessageTooLarge` instead (and a reply that large goes back as an error), so one
oversized request never costs the other sandboxes on the link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ujson

from ashd.errors import AshError
from ashd.wire import protocol

log = logging.getLogger(__name__)

CONTROL = 0
HEADER_BYTES = 4
MAX_MESSAGE_BYTES = protocol.MAX_FRAME_BYTES + HEADER_BYTES
INBOX_FRAMES = 256  # frames buffered per data channel before its sender waits
REQUEST_TIMEOUT_S = 60.0

Json = dict[str, Any]
Send = Callable[[bytes], Awaitable[None]]
"""Write one link message; raises ConnectionError (or tornado's WebSocketClosedError) once closed."""
Handler = Callable[["Mux", Json], Awaitable[Json | None]]
"""Serves one control request or event; a request's dict (or None: ``{}``) is its reply."""


class LinkClosed(ConnectionError):
    """The link closed (or the peer refused the request with an error)."""


class RequestFailed(Exception):
    """The peer answered a request with ``ok: false``; the message says why. ``status`` and
    ``code``: the :class:`~ashd.errors.AshError` the peer's handler raised, if it was one
    (so a coordinator can answer its client as the runner's own code decided)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class MessageTooLarge(RequestFailed):
    """A message over :data:`MAX_MESSAGE_BYTES`, refused before it is sent: the peer would
    close the whole link over it (and every sandbox on it would be lost)."""


def pack(channel: int, payload: bytes) -> bytes:
    return channel.to_bytes(HEADER_BYTES, "big") + payload


def unpack(message: bytes) -> tuple[int, bytes]:
    if len(message) < HEADER_BYTES:
        raise protocol.ProtocolError("link message shorter than its channel header")
    return int.from_bytes(message[:HEADER_BYTES], "big"), message[HEADER_BYTES:]


def encode_control(body: Json) -> bytes:
    return pack(CONTROL, ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False).encode())


def decode_control(payload: bytes) -> Json:
    try:
        body = ujson.loads(payload)
    except ValueError as exc:
        raise protocol.ProtocolError(f"control message is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise protocol.ProtocolError("control message must be a JSON object with a string 'op'")
    return body


@dataclass
class Channel:
    """One relayed bridge connection: frames in (``inbox``; None once closed) and out."""

    id: int
    mux: Mux
    inbox: asyncio.Queue[bytes | None]

    async def send(self, frame: bytes) -> None:
        await self.mux.send_frame(self.id, frame)

    async def receive(self) -> bytes | None:
        """The next frame, or None once the channel closed (stays None)."""
        frame = await self.inbox.get()
        if frame is None:
            self.inbox.put_nowait(None)
        return frame

    def close(self, reason: str = "") -> None:
        """Close this end and tell the peer. Idempotent."""
        self.mux.close_channel(self.id, reason, tell_peer=True)


class Mux:
    def __init__(self, send: Send, name: str, first_channel: int = 1) -> None:
        """``first_channel``: channel ids this end allocates are first, first+2, ... (the
        coordinator allocates odd ids, the runner even ones, so the two never collide).
        Set :attr:`handler` before the first message arrives."""
        self._send = send
        self.handler: Handler = _unserved
        self.name = name
        self._next_request = 0
        self._next_channel = first_channel
        self._replies: dict[int, asyncio.Future[Json]] = {}
        self._channels: dict[int, Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self._on_close: list[Callable[[], None]] = []

    # -- sending --------------------------------------------------------------------------

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **body: Any) -> Json:
        """Send a request and wait for its reply. Raises LinkClosed, RequestFailed, TimeoutError."""
        self._next_request += 1
        rid = self._next_request
        answer: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._replies[rid] = answer
        try:
            await self._write(encode_control({"op": op, "id": rid, **body}))
            reply = await asyncio.wait_for(answer, timeout)
        finally:
            self._replies.pop(rid, None)
        if not reply.get("ok"):
            status, code = reply.get("status"), reply.get("code")
            raise RequestFailed(str(reply.get("error") or f"{op} failed"),
                                status if isinstance(status, int) else None, code if isinstance(code, str) else None)
        return reply

    async def event(self, op: str, **body: Any) -> None:
        """Send an event (no reply). Raises LinkClosed."""
        await self._write(encode_control({"op": op, **body}))

    def event_soon(self, op: str, **body: Any) -> None:
        """:meth:`event` from a callback that cannot await; a closed link drops it (logged)."""
        self._spawn(self._event_quietly(op, body))

    async def _event_quietly(self, op: str, body: Json) -> None:
        try:
            await self.event(op, **body)
        except LinkClosed:
            log.info("link %s: %s event not sent; the link closed", self.name, op)
        except MessageTooLarge as exc:
            log.warning("link %s: %s event not sent: %s", self.name, op, exc)

    async def send_frame(self, channel: int, frame: bytes) -> None:
        if channel not in self._channels:
            raise LinkClosed(f"channel {channel} is closed")
        await self._write(pack(channel, frame))

    async def _write(self, message: bytes) -> None:
        if self.closed:
            raise LinkClosed(f"link {self.name} is closed")
        if len(message) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"a {len(message)}-byte message is over the runner link's limit of "
                                  f"{MAX_MESSAGE_BYTES} bytes; not sent")
        try:
            await self._send(message)
        except Exception as exc:  # tornado raises WebSocketClosedError / StreamClosedError
            raise LinkClosed(f"link {self.name}: {exc or type(exc).__name__}") from exc

    # -- channels -------------------------------------------------------------------------

    def new_channel(self) -> Channel:
        cid = self._next_channel
        self._next_channel += 2
        return self.adopt_channel(cid)

    def adopt_channel(self, cid: int) -> Channel:
        """The channel with id ``cid`` (the peer allocated it). Raises ProtocolError if in use."""
        if cid <= CONTROL or cid in self._channels:
            raise protocol.ProtocolError(f"channel {cid} is not free")
        channel = Channel(cid, self, asyncio.Queue(INBOX_FRAMES))
        self._channels[cid] = channel
        return channel

    def close_channel(self, cid: int, reason: str = "", tell_peer: bool = False) -> None:
        channel = self._channels.pop(cid, None)
        if channel is None:
            return
        _end(channel.inbox)
        if tell_peer and not self.closed:
            self.event_soon("close", ch=cid, reason=reason)

    # -- receiving ------------------------------------------------------------------------

    async def dispatch(self, message: bytes) -> None:
        """Route one incoming link message. Raises ProtocolError for a malformed one (the
        caller closes the link)."""
        cid, payload = unpack(message)
        if cid != CONTROL:
            channel = self._channels.get(cid)
            if channel is not None:  # frames racing a close are dropped
                await channel.inbox.put(payload)
            return
        body = decode_control(payload)
        op = body["op"]
        if op == "reply":
            waiting = self._replies.get(body.get("id"))  # type: ignore[arg-type]
            if waiting is not None and not waiting.done():
                waiting.set_result(body)
        elif op == "close":
            closed = self._channels.pop(body.get("ch"), None)  # type: ignore[arg-type]
            if closed is not None:  # after the frames before it, which the reader still gets
                await closed.inbox.put(None)
        elif isinstance(body.get("id"), int):
            self._spawn(self._serve(body))
        else:
            await self._handle_event(body)

    async def _serve(self, body: Json) -> None:
        try:
            reply = {"ok": True, **(await self.handler(self, body) or {})}
        except AshError as exc:  # the handler's answer: its status and code travel with it
            if exc.status >= 500:
                log.exception("link %s: %s request failed", self.name, body["op"])
            reply = {"ok": False, "error": exc.message, "status": exc.status, "code": exc.code}
        except Exception as exc:  # boundary: the peer gets the error as the reply
            if not isinstance(exc, (RequestFailed, LinkClosed, OSError, ValueError)):
                log.exception("link %s: %s request failed", self.name, body["op"])
            reply = {"ok": False, "error": str(exc) or type(exc).__name__}
        try:
            try:
                await self._write(encode_control({"op": "reply", "id": body["id"], **reply}))
            except MessageTooLarge as exc:  # the request fails instead of the link
                await self._write(encode_control({"op": "reply", "id": body["id"], "ok": False, "error": str(exc)}))
        except LinkClosed:
            pass

    async def _handle_event(self, body: Json) -> None:
        try:
            await self.handler(self, body)
        except Exception:  # boundary: a bad event must not take the link down
            log.exception("link %s: %s event failed", self.name, body["op"])

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the loop) when the link closes; at once if it already has."""
        if self.closed:
            callback()
        else:
            self._on_close.append(callback)

    def lost(self) -> None:
        """The transport closed: fail waiting requests, end every channel. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for waiting in self._replies.values():
            if not waiting.done():
                waiting.set_exception(LinkClosed(f"link {self.name} closed"))
        for cid in list(self._channels):
            self.close_channel(cid)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("link %s: close callback failed", self.name)


def _end(inbox: asyncio.Queue[bytes | None]) -> None:
    """Mark a channel's inbox closed even when it is full (its reader gets None next)."""
    while True:
        try:
            inbox.put_nowait(None)
            return
        except asyncio.QueueFull:
            inbox.get_nowait()


async def _unserved(mux: Mux, body: Json) -> Json | None:
    raise RequestFailed(f"link {mux.name} serves no {body['op']!r}")

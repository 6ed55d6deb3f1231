"""Tornado handlers of the scripted model: thin adapters from HTTP to the planner.

Every handler runs on the IOLoop thread of the server that owns the application. The
planning is pure (:func:`~ashd.scripted.planner.plan_reply`); handlers only decode the
request, record it, wait for the scripted pauses and write the response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from asyncio import Future
from typing import Any

import tornado.web
from tornado import httputil
from tornado.iostream import StreamClosedError

from ashd.scripted.planner import ModelSettings, plan_reply
from ashd.scripted.recorder import Recorder, make_record
from ashd.scripted.reply import ErrorOut, Reply
from ashd.scripted.wire import encode_event, error_body, message_body, stream_events

logger = logging.getLogger(__name__)
MODEL_ID = "claude-scripted"


class _Base(tornado.web.RequestHandler):
    """Records the request on arrival and its outcome when the response ends."""

    recorder: Recorder
    settings_: ModelSettings

    def initialize(self, recorder: Recorder, settings: ModelSettings) -> None:
        self.recorder = recorder
        self.settings_ = settings
        self._closed = asyncio.Event()
        self._handle: tuple[int, int] | None = None

    def prepare(self) -> None:
        request = self.request
        self._handle = self.recorder.add(
            make_record(
                request.method or "",
                request.path,
                request.query,
                dict(request.headers),
                self._json_body(),
                time.time(),
            )
        )

    def on_connection_close(self) -> None:
        self._closed.set()
        self._record_outcome()

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        # Record before the last bytes go out: a client that has its answer must see it.
        self._record_outcome()
        return super().finish(chunk)

    def _record_outcome(self) -> None:
        if self._handle is not None:
            self.recorder.finish(self._handle, self.get_status(), self._closed.is_set())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = httputil.responses.get(status_code, "error")
        self.finish(error_body(ErrorOut(status_code, reason)))

    def _json_body(self) -> Any:
        """The decoded JSON body, or None when it is empty or not JSON."""
        try:
            return json.loads(self.request.body) if self.request.body else None
        except ValueError:
            return None

    async def _pause(self, ms: int) -> bool:
        """Wait ``ms`` milliseconds; False if the client disconnected meanwhile."""
        if ms > 0:
            try:
                await asyncio.wait_for(self._closed.wait(), ms / 1000)
            except TimeoutError:
                pass
        return not self._closed.is_set()

    def _send_error(self, error: ErrorOut) -> None:
        """Finish with Anthropic's error JSON and ``error.status``."""
        self.set_status(error.status)
        if error.should_retry is not None:
            self.set_header("x-should-retry", "true" if error.should_retry else "false")
        self.finish(error_body(error))


class MessagesHandler(_Base):
    """``POST /v1/messages``: a scripted reply, streamed (SSE) or as one JSON message."""

    async def post(self) -> None:
        body = self._json_body()
        if not isinstance(body, dict):
            self._send_error(ErrorOut(400, "request body must be a JSON object"))
            return
        reply = plan_reply(body, self.settings_)
        model = str(body.get("model") or MODEL_ID)
        stream = bool(body.get("stream"))
        logger.debug(
            "scripted reply %s: %d blocks, stop_reason %s, error %s",
            reply.message_id,
            len(reply.blocks),
            reply.stop_reason,
            reply.error,
        )
        self.set_header("request-id", "req_" + reply.message_id.removeprefix("msg_"))
        if not await self._pause(reply.delay_ms):
            return
        if reply.error is not None and reply.is_http_error(stream):
            self._send_error(reply.error)
        elif stream:
            await self._stream(reply, model)
        else:
            self.finish(message_body(reply, model))

    async def _stream(self, reply: Reply, model: str) -> None:
        """Send ``reply`` as SSE, flushing each event; stops quietly if the client leaves."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        try:
            for event in stream_events(reply, model):
                if not await self._pause(event.pause_ms):
                    return
                self.write(encode_event(event))
                await self.flush()
        except StreamClosedError:
            self._closed.set()
            return
        self.finish()


class CountTokensHandler(_Base):
    """``POST /v1/messages/count_tokens``: the configured input token count."""

    def post(self) -> None:
        self.finish({"input_tokens": self.settings_.input_tokens})


class HelloHandler(_Base):
    """``HEAD``/``GET /api/hello``: the CLI's connectivity probe."""

    def head(self) -> None:
        self.set_status(200)

    def get(self) -> None:
        self.finish({"message": "hello"})


class ModelsHandler(_Base):
    """``GET /v1/models``: one model, enough for clients that list models."""

    def get(self) -> None:
        entry = {
            "type": "model",
            "id": MODEL_ID,
            "display_name": "Scripted model",
            "created_at": "2025-01-01T00:00:00Z",
        }
        self.finish({"data": [entry], "has_more": False, "first_id": MODEL_ID, "last_id": MODEL_ID})


class NotFoundHandler(_Base):
    """Any other path: recorded, then 404 with Anthropic's error JSON."""

    def prepare(self) -> None:
        super().prepare()
        self._send_error(ErrorOut(404, f"scripted model has no route {self.request.path}"))


class HealthHandler(tornado.web.RequestHandler):
    """``GET /_scripted/health`` (not recorded)."""

    def initialize(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def get(self) -> None:
        self.finish({"status": "ok", "requests": len(self.recorder.snapshot())})


class RequestsHandler(tornado.web.RequestHandler):
    """``GET``/``DELETE /_scripted/requests``: list or clear the record (not recorded)."""

    def initialize(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([r.to_json() for r in self.recorder.snapshot()]))

    def delete(self) -> None:
        self.recorder.clear()
        self.set_status(204)


def make_app(recorder: Recorder, settings: ModelSettings) -> tornado.web.Application:
    """The Tornado application serving the scripted model. Call on the IOLoop's thread."""
    scripted = {"recorder": recorder, "settings": settings}
    own = {"recorder": recorder}
    return tornado.web.Application(
        [
            (r"/v1/messages", MessagesHandler, scripted),
            (r"/v1/messages/count_tokens", CountTokensHandler, scripted),
            (r"/api/hello", HelloHandler, scripted),
            (r"/v1/models", ModelsHandler, scripted),
            (r"/_scripted/health", HealthHandler, own),
            (r"/_scripted/requests", RequestsHandler, own),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=scripted,
        log_function=_log_request,
    )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log at DEBUG: tests and CI runs stay quiet unless asked."""
    request = handler.request
    logger.debug(
        "%s %s -> %d (%.1f ms)",
        request.method,
        request.uri,
        handler.get_status(),
        1000 * request.request_time(),
    )

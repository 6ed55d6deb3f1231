"""Base handler: authentication, scopes, rate limits, CORS, JSON in and out, Ash's error body.

Every request (``prepare``): CORS headers for a listed origin; then, unless the path is
public, the API key (401), the scope the method needs (403, ``required_scope``, see
``scopes.py``) and the key's rate limits (429). Requests without a valid key count against
their client address instead, so guessing keys is throttled too.

Handlers are thin adapters: parse and validate, call the store or an actor through the
adapter in ``aio.py``, render with ``views.py``. Every error becomes
``{"error": message, "statusCode": status}``; unexpected exceptions are logged with a
traceback and reported as a 500 without internals.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import tornado.web
import ujson

from ashd.errors import (
    AshError,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SandboxFailed,
    Unauthorized,
    Unavailable,
)
from ashd.events import compact_json
from ashd.http import scopes
from ashd.http.auth import PUBLIC_PATHS, Principal
from ashd.http.context import AppContext
from ashd.store import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024


class ApiHandler(tornado.web.RequestHandler):
    ctx: AppContext
    principal: Principal
    max_body = DEFAULT_MAX_BODY
    # The scope each method needs: None = read for GET/HEAD, write otherwise; a scope name
    # for every method ("admin"), or {"GET": "read", "POST": "admin"}. See scopes.py.
    required_scope: ClassVar[scopes.RequiredScope] = None
    # False: no per-key rate limit once authenticated (runners' heartbeats under the internal
    # secret: a throttled heartbeat would get a live runner swept). Failed attempts still count.
    rate_limited: ClassVar[bool] = True

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.set_default_headers()

    def set_default_headers(self) -> None:
        # Tornado calls this again when send_error() clears the headers: errors keep CORS.
        ctx = getattr(self, "ctx", None)
        if ctx is not None:
            for name, value in ctx.cors.headers(self.request.headers.get("Origin")).items():
                self.set_header(name, value)

    async def options(self, *args: str) -> None:
        """A CORS preflight: 204 with the allowed methods and headers for a listed origin,
        else 404 (CORS off or origin not listed: the browser then refuses the request).
        Needs no key: browsers never send one on a preflight."""
        headers = self.ctx.cors.preflight(self.request.headers.get("Origin"))
        if not headers:
            raise NotFound(f"Route OPTIONS {self.request.path} not found (CORS is off or this origin is not "
                           "in ASH_ALLOWED_ORIGINS)")
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_status(204)
        self.finish()

    async def prepare(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if self.request.method == "OPTIONS":
            return
        if self.request.path in PUBLIC_PATHS:
            if not self.request.path.startswith("/health"):  # health probes stay cheap and unthrottled
                self.throttle_address()
            return
        await self.authenticate()
        scopes.check(self.principal.scopes, self.required_scope_now())
        if self.rate_limited:
            self.ctx.limiter.check(f"key:{self.principal.key_id}", self.request.method or "", self.request.path)

    async def authenticate(self) -> None:
        """Set ``self.principal`` from the Authorization header (from the short-lived key
        cache when it authenticated a moment ago); Unauthorized (401) otherwise (counted
        against the client address: a 429 once it has guessed too often)."""
        header = self.request.headers.get("Authorization")
        cached = self.ctx.keys.get(header) if header else None
        if cached is not None:
            self.principal = cached
            return
        generation = self.ctx.keys.generation
        try:
            self.principal = await self.ctx.offload.read(self.ctx.hasher.authenticate, header, self.ctx.store)
        except Unauthorized:
            self.throttle_address()
            raise
        if header:
            self.ctx.keys.put(header, self.principal, generation)

    def throttle_address(self) -> None:
        """Count a request without a valid key against the client's address (RateLimited)."""
        self.ctx.limiter.check(f"ip:{self.request.remote_ip}", self.request.method or "", self.request.path)

    def required_scope_now(self) -> str:
        return scopes.required(self.required_scope, self.request.method or "GET")

    @property
    def tenant(self) -> str:
        return self.principal.tenant_id

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object. Raises BadRequest / PayloadTooLarge."""
        body = self.request.body
        if len(body) > self.max_body:
            raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
        if not body.strip():
            return {}
        try:
            value = ujson.loads(body)
        except ValueError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("request body must be a JSON object")
        return value

    def on_finish(self) -> None:
        # Labelled by route pattern, never the raw path: ids would make one series per session.
        route = self.settings.get("route_labels", {}).get(type(self), "unmatched")
        method = self.request.method if self.request.method in self.SUPPORTED_METHODS else "other"
        self.ctx.metrics.http_duration.labels(method, route, self.get_status()).observe(self.request.request_time())

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(compact_json(value))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AshError):  # the store's errors too: one tree, one status per class
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Runs after send_error() cleared the headers: set every response header here.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AshError):
            # An unreachable database's own message names its (masked) URL: for the log only.
            message = "The database is unavailable; retry shortly" if isinstance(exc, StoreUnavailable) else exc.message
            if isinstance(exc, Unavailable | RateLimited):
                self.set_header("Retry-After", str(exc.retry_after_s))
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(ujson.dumps({"error": message, "statusCode": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AshError) and value.status < 500:
            return
        if isinstance(value, Unavailable | SandboxFailed):  # expected and already explained
            log.warning("%s %s: %s", self.request.method, self.request.path, value.message)
            return
        if isinstance(value, tornado.web.HTTPError):
            return super().log_exception(typ, value, tb)
        log.error("%s %s failed", self.request.method, self.request.path, exc_info=(typ, value, tb))


class NotFoundHandler(ApiHandler):
    """Unknown paths: Ash's 404 body (auth is checked first, like any route; any scope may
    learn that a route does not exist)."""

    required_scope = scopes.READ

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound(f"Route {self.request.method} {self.request.path} not found")

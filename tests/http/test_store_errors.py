"""A store error that reaches a handler answers with its place in the one error tree.

Real store, real ``ApiHandler`` error rendering, a tiny Tornado app: a uniqueness rule the
request breaks (a store ``Conflict``) is a 409 that says what to do, not a 500; a database
that cannot be reached is a 503 with a retry hint that does not show the database URL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import tornado.httpserver
import tornado.netutil
import tornado.web

from ashd import errors
from ashd.http.base import ApiHandler
from ashd.http.context import AppContext
from ashd.http.cors import CorsPolicy
from ashd.metrics import Metrics
from ashd.store import Conflict, Store, StoreUnavailable

UNREACHABLE = "postgresql://ashd:secret-password@127.0.0.1:1/nowhere"  # nothing listens on port 1


class OpenHandler(ApiHandler):
    async def prepare(self) -> None:
        """No API key: this app checks how errors are answered, not who may ask."""


class AddKey(OpenHandler):
    """Stores the same key hash on every POST: the second breaks the store's uniqueness rule."""

    def post(self) -> None:
        row = self.ctx.store.add_api_key("default", "one-hash", "twice")
        self.send_json({"id": row.id}, 201)


class OpenUnreachable(OpenHandler):
    def get(self) -> None:
        Store(UNREACHABLE, connect_retries=0)


async def answers(store: Store, *requests: tuple[str, str]) -> list[httpx.Response]:
    ctx = cast(AppContext, SimpleNamespace(store=store, cors=CorsPolicy(), metrics=Metrics()))
    app = tornado.web.Application([("/keys", AddKey, {"ctx": ctx}), ("/unreachable", OpenUnreachable, {"ctx": ctx})])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sockets[0].getsockname()[1]}") as client:
            return [await client.request(method, path) for method, path in requests]
    finally:
        server.stop()
        await server.close_all_connections()


def test_store_errors_are_in_the_one_tree() -> None:
    assert issubclass(Conflict, errors.Conflict) and Conflict.status == 409
    assert issubclass(StoreUnavailable, errors.Unavailable) and StoreUnavailable.status == 503


def test_a_store_conflict_reaching_a_handler_is_a_409_that_says_what_to_do(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    store.migrate()
    try:
        first, second = asyncio.run(answers(store, ("POST", "/keys"), ("POST", "/keys")))
    finally:
        store.close()
    assert first.status_code == 201, first.text
    assert second.status_code == 409, second.text
    body = second.json()
    assert body["statusCode"] == 409
    assert "conflicts with a record stored meanwhile" in body["error"] and "retry" in body["error"]
    assert "api_keys.key_hash" in body["error"]  # names the rule, never the values (no hashes)
    assert "one-hash" not in body["error"]


def test_an_unreachable_database_is_a_503_with_a_retry_hint(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    try:
        [answer] = asyncio.run(answers(store, ("GET", "/unreachable")))
    finally:
        store.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {"error": "The database is unavailable; retry shortly", "statusCode": 503}

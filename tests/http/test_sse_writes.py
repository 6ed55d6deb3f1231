"""How SSE responses go out on the socket."""

from __future__ import annotations

import socket

import tornado.testing
import tornado.web

from ashd.http import sse


class _Stream(tornado.web.RequestHandler):
    async def get(self) -> None:
        sse.start(self)
        sock = self.request.connection.stream.socket  # type: ignore[union-attr]
        await sse.send(self, f"data: {sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}\n\n".encode())


class TestSseSocket(tornado.testing.AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([("/s", _Stream)])

    def test_frames_are_not_held_for_the_clients_ack(self) -> None:
        """Tornado keeps Nagle's algorithm on while a response streams; a frame written behind
        an unacknowledged one would wait up to the client's delayed-ACK timeout (40 ms)."""
        body = self.fetch("/s").body.decode()
        assert body.startswith("data: ") and body.split()[1] != "0"

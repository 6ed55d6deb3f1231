"""A download whose client takes no piece within download.STALL_S is cut off, so it never holds
its file (a workspace bundle's temporary file, its tenant's bundle slot) for as long as TCP
keeps probing a closed window."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from ashd.http import download
from ashd.runtime.offload import Offload


class _Download(tornado.web.RequestHandler):
    def initialize(self, ctx: Any, sent: dict[str, Any]) -> None:
        self.ctx, self.sent = ctx, sent

    async def get(self) -> None:
        self.sent["file"] = f = io.BytesIO(os.urandom(32 * 1024 * 1024))  # far more than socket buffers hold
        await download.send_file(cast(Any, self), f, 32 * 1024 * 1024, "big.bin")
        self.sent["over"].set()


def test_a_client_that_reads_nothing_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "STALL_S", 0.5)

    async def main() -> None:
        offload, sent = Offload(readers=2), {"over": asyncio.Event()}
        app = tornado.web.Application([("/d", _Download, {"ctx": SimpleNamespace(offload=offload), "sent": sent})])
        server = tornado.httpserver.HTTPServer(app)
        listeners = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(listeners)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listeners[0].getsockname())
        client.sendall(b"GET /d HTTP/1.1\r\nHost: t\r\n\r\n")  # and never reads
        try:
            await asyncio.wait_for(sent["over"].wait(), 20)
            assert sent["file"].closed  # the download let go of its file
        finally:
            client.close()
            server.stop()
            offload.shutdown()

    asyncio.run(main())

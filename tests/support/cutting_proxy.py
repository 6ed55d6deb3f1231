"""A TCP proxy that cuts chosen connections after some bytes of the server's answer.

Used to drop a real SSE stream mid-turn, the way a flaky network or a restarted load
balancer would: the client sees a connection that ends without ``done``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to ``target``; connection number n (from 0) is cut after
    ``cuts[n]`` bytes from the server (connections without an entry are left whole)."""

    def __init__(self, target_port: int, cuts: dict[int, int]) -> None:
        self._target = ("127.0.0.1", target_port)
        self._cuts = cuts
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.cut = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closing = False

    def start(self) -> None:
        self._spawn(self._accept)

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            server = socket.create_connection(self._target)
            self._spawn(self._pipe, client, server, None)
            self._spawn(self._pipe, server, client, self._cuts.get(number))

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(4096):
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    self.cut.set()
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@contextmanager
def cutting_proxy(target_port: int, cuts: dict[int, int]) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(target_port, cuts)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()

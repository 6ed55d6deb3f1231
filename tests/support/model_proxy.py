"""A real ModelProxy on its own loop, serving one sandbox's listener on a loopback port.

``raw`` sends bytes exactly as given (for paths and framings a client library would fix up)
and returns everything the proxy answered before it closed the connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

from ashd.body_policy import MAX_REQUEST_BYTES, BodyPolicy
from ashd.proxy.gate import Gate
from ashd.proxy.loop import ProxyLoop
from ashd.proxy.meter import Usage
from ashd.proxy.model import ModelProxy

REAL_KEY = "sk-real-key-for-proxy-tests"


class Harness:
    def __init__(self, upstream: str, budget: float | None = None, max_connections: int = 32,
                 idle_timeout_s: float = 600.0, allowed_server_tools: str = "",
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.loop = ProxyLoop()
        self.usage: list[tuple[Gate, Usage]] = []
        self.metered = threading.Event()
        self.proxy = ModelProxy(self.loop, upstream, REAL_KEY, "", self._on_usage,
                                max_connections=max_connections, idle_timeout_s=idle_timeout_s,
                                body_policy=BodyPolicy.parse(allowed_server_tools, max_request_bytes))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.token = self.proxy.register("sb1", sock, {"session_id": "s1", "tenant_id": "t1",
                                                       "agent_name": "a", "budget_usd": budget})

    @property
    def gate(self) -> Gate:
        return self.proxy.gates["sb1"]

    def _on_usage(self, gate: Gate, usage: Usage) -> None:
        self.usage.append((gate, usage))
        self.metered.set()

    def post(self, prompt: str, key: str | None = None, stream: bool = True,
             path: str = "/v1/messages") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"content-type": "application/json", "x-api-key": key if key is not None else self.token,
                   "authorization": "Bearer should-be-stripped"}
        conn.request("POST", path, body=body_for(prompt, stream), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def raw(self, data: bytes, timeout: float = 30.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return read_to_close(sock)

    def request_bytes(self, method: str, target: str, prompt: str = "[[say: hi]]",
                      extra: str = "", stream: bool = False) -> bytes:
        body = body_for(prompt, stream).encode()
        return (f"{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {self.token}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
                f"{extra}\r\n").encode() + body  # close: ``raw`` reads the reply to the end of the connection

    def close(self) -> None:
        self.proxy.unregister("sb1")
        self.loop.stop()


def body_for(prompt: str, stream: bool) -> str:
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]})


def read_to_close(sock: socket.socket) -> bytes:
    out = bytearray()
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return bytes(out)


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 when the proxy answered nothing)."""
    line = answer.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0

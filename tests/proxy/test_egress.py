"""The egress proxy: allowlist, private-address refusal after resolution, CONNECT only."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ashd.proxy.egress import Decision, EgressGate, EgressProxy, address_refusal, host_allowed
from ashd.proxy.loop import ProxyLoop

GATE = EgressGate("s1", "t1", ("allowed.test", "*.wild.test", "rebind.test", "public.test"))


def test_allowlist_matching() -> None:
    allow = ("example.com", "*.github.com")
    assert host_allowed("example.com", allow) and host_allowed("EXAMPLE.com.", allow)
    assert host_allowed("api.github.com", allow) and not host_allowed("github.com", allow)
    assert not host_allowed("example.com.evil.test", allow) and not host_allowed("evilgithub.com", allow)
    assert not host_allowed("127.0.0.1", ("127.0.0.1",))  # IP literals never match


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254",
                                     "::1", "fe80::1", "fd00::1", "0.0.0.0", "100.64.0.1"])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(address) is not None


def test_public_address_passes() -> None:
    assert address_refusal("93.184.216.34") is None


class Target:
    """A local TCP echo server standing in for an allowlisted site."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                conn.sendall(b"echo:" + data)


@pytest.fixture
def proxy() -> Iterator[tuple[EgressProxy, int, list[Decision]]]:
    loop = ProxyLoop()
    decisions: list[Decision] = []
    resolved = {"rebind.test": ["127.0.0.1"], "public.test": ["93.184.216.34", "10.0.0.1"]}
    target = Target()
    egress = EgressProxy(loop, lambda gate, d: decisions.append(d), pins={"allowed.test": "127.0.0.1"},
                         resolve=lambda host, port: resolved[host])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    port = sock.getsockname()[1]
    egress.register("sb1", sock, GATE)
    egress.target_port = target.port  # type: ignore[attr-defined]
    yield egress, port, decisions
    egress.unregister("sb1")
    target.sock.close()
    loop.stop()


def _connect(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        head = conn.recv(4096)
        if head.startswith(b"HTTP/1.1 200"):
            conn.sendall(b"ping")
            return head + conn.recv(4096)
        return head


def test_allowlisted_pinned_host_is_tunnelled(proxy: tuple[EgressProxy, int, list[Decision]]) -> None:
    egress, port, decisions = proxy
    target = egress.target_port  # type: ignore[attr-defined]
    reply = _connect(port, f"CONNECT allowed.test:{target} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"echo:ping")
    assert decisions[-1].allowed and decisions[-1].host == "allowed.test"


@pytest.mark.parametrize(("authority", "why"), [
    ("other.test:443", "allowlist"),
    ("127.0.0.1:443", "allowlist"),
    ("rebind.test:443", "loopback"),       # allowlisted name resolving to loopback
    ("public.test:443", "private"),        # any private address in the answer refuses
    ("sub.wild.test:22", "port"),
])
def test_refusals_are_recorded(proxy: tuple[EgressProxy, int, list[Decision]], authority: str, why: str) -> None:
    _, port, decisions = proxy
    reply = _connect(port, f"CONNECT {authority} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403")
    assert not decisions[-1].allowed and why in decisions[-1].reason


def test_plain_http_proxying_is_refused(proxy: tuple[EgressProxy, int, list[Decision]]) -> None:
    _, port, decisions = proxy
    reply = _connect(port, b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403") and "CONNECT" in decisions[-1].reason


def test_tunnels_over_the_cap_are_refused_at_once_and_unregister_closes_the_rest() -> None:
    loop = ProxyLoop()
    egress = EgressProxy(loop, lambda gate, d: None, max_connections=2)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    port = sock.getsockname()[1]
    egress.register("sb1", sock, GATE)
    held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as extra:
            assert extra.recv(4096).startswith(b"HTTP/1.1 429")
        egress.unregister("sb1")
        for conn in held:
            assert conn.recv(4096) == b""  # closed by ashd, not by the 30 s timeout
    finally:
        for conn in held:
            conn.close()
        loop.stop()

"""The egress proxy: HTTP CONNECT to allowlisted domains only, every decision recorded.

A sandbox has no route out; its tools reach the network only through this proxy, listening
at ``127.0.0.1:<port>`` in the sandbox's namespace (``HTTPS_PROXY``), and only when its agent
declares domains (``.ashd/sandbox.json`` ``egress.allow``). For each CONNECT:

- the host must match the allowlist (``name`` exactly, ``*.name`` for subdomains); IP
  literals never match; ports 443 and 80 only, unless the host is pinned;
- the name is resolved by ashd (no DNS inside), and the connection is refused if *any*
  resolved address is loopback, private, link-local, multicast or otherwise not global; the
  proxy connects to the address it checked (no second lookup to rebind);
- operator-pinned hosts (``[proxy] egress_pins = "name=ip,..."``) resolve to the given
  address and are trusted as given, private or not (for internal services you mean to expose).

Only CONNECT is served (plain-HTTP proxying would let the agent talk to hosts by IP). A
sandbox holds at most ``max_connections`` tunnels at once (more are answered 429 and closed
at once); a tunnel that moves no byte either way for the idle timeout is closed
(:mod:`ashd.proxy.connections`).
``on_decision`` is called on the proxy loop thread and must not block.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ashd.proxy import http1
from ashd.proxy.connections import ConnectionTable, Slot
from ashd.proxy.loop import ProxyLoop

log = logging.getLogger(__name__)

DEFAULT_PORTS = (443, 80)
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Decision:
    host: str
    port: int
    allowed: bool
    reason: str
    address: str = ""


@dataclass(frozen=True)
class EgressGate:
    session_id: str
    tenant_id: str
    allow: tuple[str, ...]


OnDecision = Callable[[EgressGate, Decision], None]


def host_allowed(host: str, allow: tuple[str, ...]) -> bool:
    """Pure: exact names, or ``*.suffix`` for strict subdomains. IP literals never match."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    for rule in allow:
        if rule.startswith("*."):
            if host.endswith(rule[1:]) and host != rule[2:]:
                return True
        elif host == rule:
            return True
    return False


def address_refusal(address: str) -> str | None:
    """Pure: why this address may not be reached, or None."""
    ip = ipaddress.ip_address(address)
    for label, bad in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast),
                       ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved)):
        if bad:
            return f"{address} is a {label} address"
    return None if ip.is_global else f"{address} is not a public address"


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressProxy:
    def __init__(self, loop: ProxyLoop, on_decision: OnDecision, pins: Mapping[str, str] | None = None,
                 resolve: Callable[[str, int], list[str]] = _resolve, max_connections: int = 32,
                 idle_timeout_s: float = 600.0) -> None:
        self._loop = loop
        self.connections = ConnectionTable("egress", max_connections, idle_timeout_s)
        self._on_decision = on_decision
        self._pins = {k.lower(): v for k, v in (pins or {}).items()}
        self._resolve = resolve
        self._lock = threading.Lock()
        self._servers: dict[str, asyncio.Server] = {}

    def register(self, sandbox_id: str, sock: object, gate: EgressGate) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.connections.serve(sandbox_id, writer, lambda slot: self._handle(gate, slot, reader, writer),
                                         _refuse_connection)

        server = self._loop.serve(sock, handle)  # type: ignore[arg-type]
        with self._lock:
            self._servers[sandbox_id] = server

    def unregister(self, sandbox_id: str) -> None:
        """Close the listener and every open tunnel of the sandbox. Idempotent; never raises."""
        with self._lock:
            server = self._servers.pop(sandbox_id, None)
        if server is not None:
            self._loop.close_server(server)
        self._loop.run_quietly(lambda: self.connections.close_sandbox(sandbox_id))

    async def decide(self, gate: EgressGate, target: str) -> Decision:
        """Check one CONNECT authority (``host:port``) against the gate."""
        host, sep, port_text = target.rpartition(":")
        host = host.strip("[]").lower()
        if not sep or not port_text.isdigit() or not host:
            return Decision(target, 0, False, "CONNECT target must be host:port")
        port = int(port_text)
        if not host_allowed(host, gate.allow):
            return Decision(host, port, False, "host is not in the agent's egress allowlist")
        if host in self._pins:
            return Decision(host, port, True, "allowlisted (pinned address)", self._pins[host])
        if port not in DEFAULT_PORTS:
            return Decision(host, port, False, f"port {port} is not allowed (only {DEFAULT_PORTS})")
        try:
            addresses = await asyncio.get_running_loop().run_in_executor(None, self._resolve, host, port)
        except OSError as exc:
            return Decision(host, port, False, f"cannot resolve: {exc}")
        for address in addresses:
            if (why := address_refusal(address)) is not None:
                return Decision(host, port, False, why)
        if not addresses:
            return Decision(host, port, False, "no address")
        return Decision(host, port, True, "allowlisted", addresses[0])

    async def _handle(self, gate: EgressGate, slot: Slot, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await http1.read_head(reader)
            if head is None:
                return
            slot.heard()
            method, _, rest = head.start.partition(" ")
            target = rest.rpartition(" ")[0]
            if method != "CONNECT":
                decision = Decision(target[:200], 0, False, "only CONNECT is served (use https)")
            else:
                decision = await self.decide(gate, target)
            if decision.allowed:
                try:
                    up_reader, upstream = await asyncio.wait_for(
                        asyncio.open_connection(decision.address, decision.port), CONNECT_TIMEOUT_S)
                except (TimeoutError, OSError) as exc:
                    decision = Decision(decision.host, decision.port, False, f"connect failed: {exc}", decision.address)
            self._on_decision(gate, decision)
            if not decision.allowed:
                body = (decision.reason + "\n").encode()
                writer.write(f"HTTP/1.1 403 Forbidden\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
                             .encode() + body)
                await writer.drain()
                return
            assert upstream is not None
            slot.extra.append(upstream)
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream, slot), _pipe(up_reader, writer, slot))
        except (http1.HttpError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("egress proxy: session %s: %s", gate.session_id, exc)
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()


async def _refuse_connection(writer: asyncio.StreamWriter, cap: int) -> None:
    """Over the sandbox's cap: a 429 at once, no request read, and the connection closed."""
    body = f"too many open connections to the egress proxy from this sandbox (at most {cap})\n".encode()
    try:
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot) -> None:
    try:
        while data := await reader.read(http1.READ_CHUNK):
            writer.write(data)
            await writer.drain()
            slot.touch()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()

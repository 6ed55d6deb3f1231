"""A real MCP server over HTTPS (streamable HTTP or SSE), for url ``mcpServers`` tests.

Built with the official ``mcp`` package and served by uvicorn on a thread, with a
certificate for ``mcp.test`` signed by a throwaway CA (the CLI trusts it through
``NODE_EXTRA_CA_CERTS``). It records every HTTP request it receives (method, path, Host) and
every call of its one tool, ``shout``, so a test can see the call arrived. A request whose
query string holds ``locked`` must carry ``Authorization: Bearer <TOKEN>`` (else 403); one
whose query string holds ``redirect`` is sent on to :data:`ELSEWHERE` (307).
"""

from __future__ import annotations

import datetime
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

HOST = "mcp.test"
TOKEN = "remote-mcp-token-7c1e"
ELSEWHERE = "https://elsewhere.test/mcp"
PATHS = {"http": "/mcp", "sse": "/sse"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    host: str


def write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for :data:`HOST`: ``(ca.pem, leaf.pem, leaf.key)``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (_certificate("remote-mcp test CA", "remote-mcp test CA", ca_key, now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (_certificate(HOST, "remote-mcp test CA", key, now)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _certificate(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey,
                 now: datetime.datetime) -> x509.CertificateBuilder:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1)))


class RemoteMcp:
    """One MCP server over one transport (``http`` or ``sse``) on ``127.0.0.1:<port>``."""

    def __init__(self, transport: str, leaf: Path, key: Path) -> None:
        self.transport = transport
        self.requests: list[Seen] = []
        self.calls: list[str] = []
        server = MCPServer("remote-probe")

        @server.tool()
        def shout(text: str) -> str:
            """Answers the text in capitals."""
            self.calls.append(text)
            return f"remote says {text.upper()}"

        security = TransportSecuritySettings(allowed_hosts=[f"{HOST}:*"], allowed_origins=[])
        app = (server.streamable_http_app(transport_security=security) if transport == "http"
               else server.sse_app(transport_security=security))
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(self._recording(app), log_level="warning",
                                                     ssl_certfile=str(leaf), ssl_keyfile=str(key)))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def url(self, query: str = "") -> str:
        return f"https://{HOST}:{self.port}{PATHS[self.transport]}" + (f"?{query}" if query else "")

    def start(self) -> RemoteMcp:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self.transport} MCP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def _recording(self, app: Any) -> Any:
        async def record(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                self.requests.append(Seen(scope["method"], scope["path"], headers.get(b"host", b"").decode()))
                if b"locked" in scope["query_string"] and headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
                    await _answer(send, 403, [])
                    return
                if b"redirect" in scope["query_string"]:
                    await _answer(send, 307, [(b"location", ELSEWHERE.encode())])
                    return
            await app(scope, receive, send)

        return record


async def _answer(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"0"), *headers]})
    await send({"type": "http.response.body", "body": b""})

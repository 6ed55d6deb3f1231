"""Is the daemon's port free? Asked before ashd touches anything (data dir, database, sandboxes).

A second ashd on a busy port (a second ``make run``) must stop at once with a message an
operator can act on, not after it migrated the database and started sandboxes. The probe
binds each address of the host the way the HTTP server will (``tornado.netutil.bind_sockets``:
``SO_REUSEADDR``, IPv6 sockets v6-only) and closes at once. A port taken in the short gap
before the real bind still fails there.
"""

from __future__ import annotations

import errno
import socket


def port_conflict(host: str, port: int) -> str | None:
    """Why ashd cannot listen on ``host:port``, or None if it can. Blocks briefly (DNS, bind)."""
    if port == 0:  # the kernel picks a free port
        return None
    try:
        addresses = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE)
        for family, kind, proto, _name, address in sorted(set(addresses), key=lambda a: a[0]):
            _probe(family, kind, proto, address, localhost=host == "localhost")
    except OSError as exc:
        return _explain(host, port, exc)
    return None


def _probe(family: int, kind: int, proto: int, address: tuple[object, ...], localhost: bool) -> None:
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            return  # no IPv6 on this host; the server skips it too
        raise
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if not (localhost and exc.errno == errno.EADDRNOTAVAIL and address[0] == "::1"):
                raise  # (tornado skips a "localhost" ::1 that the host cannot bind)


def _explain(host: str, port: int, exc: OSError) -> str:
    change = "choose another port with --port N or ASH_PORT=N (server.port in the config file)"
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another ashd, or another program); "
                f"nothing was started: stop the other process or {change}")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} on {host}; {change}"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host / ASH_HOST or {change}"

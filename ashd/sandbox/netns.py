"""A network namespace per sandbox, made by ashd before the sandbox starts.

The namespace is pinned by a bind mount of its nsfs file at ``path`` (like ``ip netns add``),
holds only ``lo`` (up), and ashd binds listening sockets *inside* it from the host: a
short-lived thread enters the namespace with setns, binds, and hands the socket back. The
sockets are then served by ashd's proxies in the host namespace, so nothing inside the
sandbox relays anything and the agent cannot replace the listener. Because the namespace and
its listeners exist before the CLI starts, there is no start-up ordering to get wrong.

Every call blocks its caller briefly (a thread join); all raise OSError on failure.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ashd.sandbox import syscalls

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread (whose namespaces it may change) and return its result."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["ok"] = fn()
        except BaseException as exc:
            box["err"] = exc

    thread = threading.Thread(target=run, name="netns", daemon=True)
    thread.start()
    thread.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["ok"]  # type: ignore[return-value]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


class SandboxNetns:
    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self) -> None:
        """Make the namespace, bring lo up, pin it at ``path``. Requires CAP_SYS_ADMIN."""
        if self.path.exists() and os.path.ismount(self.path):
            return

        def make() -> None:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            _loopback_up()
            self.path.touch(mode=0o600, exist_ok=True)
            syscalls.bind_mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(self.path))

        _in_thread(make)

    def listen(self, host: str, port: int, backlog: int = 64) -> socket.socket:
        """A non-blocking TCP socket listening on host:port inside the namespace."""

        def bind() -> socket.socket:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, syscalls.CLONE_NEWNET)
            finally:
                os.close(fd)
            # IPPROTO_TCP spelled out: asyncio turns Nagle's algorithm off only on sockets whose
            # proto says TCP, and accepted sockets take the listener's proto. With proto 0 the
            # proxies' small writes to the CLI waited for its delayed ACK (40 ms per reply).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
            return sock

        return _in_thread(bind)

    def run_inside(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a thread inside the namespace (for tests and probes)."""

        def inside() -> T:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, syscalls.CLONE_NEWNET)
            finally:
                os.close(fd)
            return fn()

        return _in_thread(inside)

    def delete(self) -> None:
        """Unpin and remove (the namespace ends with its last process/socket). Never raises."""
        try:
            syscalls.umount(str(self.path))
        except OSError:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass

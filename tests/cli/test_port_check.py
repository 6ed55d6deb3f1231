"""The port probe ashd runs before it touches its data dir."""

from __future__ import annotations

import socket

from ashd.cli.port_check import port_conflict
from tests.support.daemon import free_port


def test_a_free_port_passes_and_a_busy_one_is_explained() -> None:
    assert port_conflict("127.0.0.1", free_port()) is None
    assert port_conflict("127.0.0.1", 0) is None  # the kernel picks
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = port_conflict("127.0.0.1", port)
    assert message is not None
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert "--port" in message and "ASH_PORT" in message


def test_an_unknown_host_is_explained() -> None:
    message = port_conflict("no-such-host.invalid", free_port())
    assert message is not None and "cannot listen on no-such-host.invalid" in message and "ASH_HOST" in message

"""The watchdog pings systemd only while its probe (the actor tree) answers; READY/WATCHDOG
datagrams go to a real unix socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ashd import systemd


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_no_ping_while_the_tree_does_not_answer_and_a_ping_once_it_does(notify_socket: socket.socket) -> None:
    answers = [False, True]

    async def probe() -> bool:
        return answers.pop(0)

    watchdog = systemd.Watchdog(60.0, probe)
    assert asyncio.run(watchdog.beat()) is False
    assert received(notify_socket) == []
    assert asyncio.run(watchdog.beat()) is True
    assert received(notify_socket) == ["WATCHDOG=1"]
    assert (watchdog.pings, watchdog.missed) == (1, 1)


def test_a_probe_that_raises_is_a_missed_ping_not_a_dead_watchdog(notify_socket: socket.socket) -> None:
    async def probe() -> bool:
        raise RuntimeError("actor gone")

    watchdog = systemd.Watchdog(60.0, probe)
    assert asyncio.run(watchdog.beat()) is False
    assert received(notify_socket) == []

"""ashd/actors/tell.py: a tell reaches a live actor and is logged, not raised, for a dead one."""

from __future__ import annotations

import logging
import threading

import pykka
import pytest

from ashd.actors.tell import tell


class Echo(pykka.ThreadingActor):
    def __init__(self, seen: threading.Event) -> None:
        super().__init__()
        self._seen = seen

    def hear(self, value: int) -> None:
        if value == 1:
            self._seen.set()


def test_tell_reaches_a_live_actor() -> None:
    seen = threading.Event()
    ref = Echo.start(seen)
    try:
        assert tell(ref.proxy().hear, 1, context="test") is True
        assert seen.wait(5)
    finally:
        ref.stop()


def test_tell_to_a_stopped_actor_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ref = Echo.start(threading.Event())
    proxy = ref.proxy()
    ref.stop()
    with caplog.at_level(logging.INFO, logger="ashd.actors.tell"):
        assert tell(proxy.hear, 1, context="telling the echo") is False
    assert "telling the echo" in caplog.text

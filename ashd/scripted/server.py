"""ScriptedModel: the scripted Messages API server on its own IOLoop thread.

Usage from a test::

    with ScriptedModel(input_tokens=10, output_tokens=5) as model:
        env = {"ANTHROPIC_BASE_URL": model.base_url, ...}
        ...
        assert model.requests()[-1].body["stream"] is True
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ashd.scripted.handlers import make_app
from ashd.scripted.planner import ModelSettings
from ashd.scripted.recorder import RecordedRequest, Recorder
from ashd.scripted.script import ScriptEntry, load_script

logger = logging.getLogger(__name__)
START_TIMEOUT_S = 10.0


class ScriptedModel:
    """A scripted Messages API server that can be started and stopped from any thread.

    The server runs its own asyncio/Tornado loop in a daemon thread. ``start`` and
    ``stop`` block the caller (bounded by timeouts); ``requests`` and ``clear`` only take
    a lock. One instance serves at most once: create a new one to serve again.
    """

    def __init__(
        self,
        input_tokens: int = 100,
        output_tokens: int = 20,
        script: Sequence[ScriptEntry] | Path | None = None,
    ) -> None:
        """``script`` is a list of entries or a script file path (read here, blocking)."""
        entries = load_script(script) if isinstance(script, Path) else tuple(script or ())
        self.settings = ModelSettings(input_tokens, output_tokens, entries)
        self._recorder = Recorder()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server; raises RuntimeError before start."""
        if self._base_url is None:
            raise RuntimeError("ScriptedModel is not started")
        return self._base_url

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind ``host:port`` (0 = ephemeral), serve in a daemon thread, return the base URL.

        Blocks until the server accepts connections (at most ``START_TIMEOUT_S``). Raises
        OSError when the address cannot be bound and RuntimeError if already started.
        """
        if self._thread is not None:
            raise RuntimeError("ScriptedModel.start() may be called only once")
        sockets = bind_sockets(port, host)
        bound = sockets[0].getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sockets, ready), name=f"scripted-model-{bound}", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"scripted model did not start within {START_TIMEOUT_S:.0f}s")
        shown = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown}:{bound}"
        logger.info("scripted model listening on %s", self._base_url)
        return self._base_url

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and end the loop thread; blocks up to ``timeout`` seconds.

        Safe to call more than once, or before ``start``.
        """
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(stopping.set)
        except RuntimeError:  # the loop is already closed
            pass
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("scripted model thread did not stop within %.1fs", timeout)

    def requests(self) -> list[RecordedRequest]:
        """Copies of every request received since start or the last ``clear``."""
        return self._recorder.snapshot()

    def clear(self) -> None:
        """Forget the recorded requests."""
        self._recorder.clear()

    def __enter__(self) -> Self:
        """Start on an ephemeral loopback port unless already started."""
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, sockets: list[socket.socket], ready: threading.Event) -> None:
        """Thread body: run the server loop until ``stop``."""
        asyncio.run(self._serve(sockets, ready))

    async def _serve(self, sockets: list[socket.socket], ready: threading.Event) -> None:
        """Serve on ``sockets`` until ``_stopping`` is set, then close all connections."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = HTTPServer(make_app(self._recorder, self.settings))
        server.add_sockets(sockets)
        ready.set()
        await self._stopping.wait()
        server.stop()
        try:
            await asyncio.wait_for(server.close_all_connections(), 2.0)
        except TimeoutError:
            logger.warning("scripted model: connections still open at shutdown")

"""A coordinator's links, one per runner id (loop thread for changes; lookups from any thread).

The RunnerLinkActors decide which runners to link to (``ashd/actors/runner_links.py``); the
connections themselves live here, on the IOLoop, so no frame hops through an actor thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ashd.runnerlink.endpoint import PATH, LinkClient, Welcome
from ashd.runnerlink.mux import Handler, Mux

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkState:
    """What a link actor knows of its connection (a fact, safe to pass between threads)."""

    connected: bool
    generation: int | None  # the runner's registry generation as it told us on connect
    attempts: int  # failed connects since the last good one


class LinkTable:
    def __init__(self, loop: asyncio.AbstractEventLoop, secret: str, serve: Callable[[Mux], Handler]) -> None:
        self._loop = loop
        self._secret = secret
        self._serve = serve
        self._clients: dict[str, LinkClient] = {}
        self._welcomes: dict[str, Welcome] = {}
        self._expected: dict[str, int] = {}  # the registry's generation of each runner

    def link_of(self, runner_id: str) -> Mux | None:
        """The runner's live link, or None (also when the process behind it answered with an
        older generation than the registry's: fenced, nothing is launched there). Any thread."""
        client = self._clients.get(runner_id)
        if client is None or self._stale(runner_id):
            return None
        return client.mux

    def _stale(self, runner_id: str) -> bool:
        welcome, expected = self._welcomes.get(runner_id), self._expected.get(runner_id)
        return (welcome is not None and welcome.generation is not None and expected is not None
                and welcome.generation < expected)

    def state(self, runner_id: str) -> LinkState:
        client = self._clients.get(runner_id)
        welcome = self._welcomes.get(runner_id)
        return LinkState(client is not None and client.mux is not None and not client.mux.closed
                         and not self._stale(runner_id),
                         welcome.generation if welcome else None, client.attempts if client else 0)

    def open(self, runner_id: str, host: str, port: int, generation: int | None = None) -> None:
        """Link to the runner (replacing a link to an old address); ``generation``: the
        registry's, below which the runner's own answer is fenced. Any thread."""
        if generation is not None:
            self._expected[runner_id] = generation
        self._loop.call_soon_threadsafe(self._open, runner_id, f"ws://{_host(host)}:{port}{PATH}")

    def close(self, runner_id: str) -> None:
        """Drop the link (its sandboxes are lost). Any thread."""
        self._loop.call_soon_threadsafe(lambda: self._drop(runner_id))

    async def close_all(self) -> None:
        await asyncio.gather(*(client.stop() for client in self._clients.values()))
        self._clients.clear()

    def _open(self, runner_id: str, url: str) -> None:
        old = self._clients.get(runner_id)
        if old is not None and old.url == url:
            return
        self._drop(runner_id)

        def up(mux: Mux, welcome: Welcome) -> None:
            self._welcomes[runner_id] = welcome
            if self._stale(runner_id):
                log.error("runner link %s at %s answers as generation %s, older than the registry's %s: "
                          "fenced (no sandbox starts there)", runner_id, url, welcome.generation,
                          self._expected.get(runner_id))
                return
            log.info("runner link %s up at %s (generation %s)", runner_id, url, welcome.generation)

        client = LinkClient(url, self._secret, runner_id, self._serve, on_up=up)
        self._clients[runner_id] = client
        client.start()

    def _drop(self, runner_id: str) -> None:
        client = self._clients.pop(runner_id, None)
        self._welcomes.pop(runner_id, None)
        if client is not None:
            stopping = asyncio.ensure_future(client.stop())
            stopping.add_done_callback(lambda f: f.exception())


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

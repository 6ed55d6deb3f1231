"""The store and the sandbox services as the root supervisor's first children.

Everything else is built over them, so the daemon opens them before the tree (the store
migrated, the sandbox services' proxies listening) and hands them to the root as its first
children: the root pings them in order before it starts the pool, and stops them last, in
reverse, after the pool has ended every bridge. Neither is restartable: a store or proxies
that fail are not mended by a restart in-process, so their failure at start stops ashd.

Stopping the store first lets the turns that the pool's stop cut short write their last
``error`` and ``done`` (``drain``), then closes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ashd.actors.children import ChildSpec, Crashed
from ashd.sandbox.services import Services
from ashd.store import Store

log = logging.getLogger(__name__)


def store_child(store: Store, drain: Callable[[], None]) -> ChildSpec:
    """``drain()``: wait (bounded) for running turns to store their last rows. Blocking."""

    def start(crashed: Crashed) -> Store:
        del crashed  # the store reports no crashes: its calls raise to their callers
        return store

    def ping(handle: Store, timeout_s: float) -> bool:
        return handle.ping()

    def stop(handle: Store, timeout_s: float) -> bool:
        try:
            drain()
        except Exception:  # boundary: the store closes all the same
            log.exception("running turns did not finish storing before the store closed")
        handle.close()
        return True

    return ChildSpec("store", start, ping, stop, restartable=False)


def services_child(services: Services) -> ChildSpec:
    """The sandbox services (model and egress proxies, OOM watcher, event writer)."""

    def start(crashed: Crashed) -> Services:
        del crashed
        return services

    def ping(handle: Services, timeout_s: float) -> bool:
        return handle.answers(timeout_s)

    def stop(handle: Services, timeout_s: float) -> bool:
        handle.stop()
        return True

    return ChildSpec("sandbox services", start, ping, stop, restartable=False)

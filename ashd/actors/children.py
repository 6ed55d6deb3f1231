"""What the root supervisor supervises: child specs, the registry of current children, and
the record of restarts and failed children that /health, /metrics and ``ashctl doctor`` show.

A child is started, pinged and stopped through callables, so actors (the pool, the session
supervisor) and non-actor services (the HTTP listener) sit in one ordered list. Callers
reach a child through :class:`ChildRegistry`, never through a cached ``ActorRef``: after a
restart the registry names the new actor. Both classes here are thread-safe (one lock each)
and never block beyond it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from ashd.errors import Unavailable
from ashd.metrics import TREE_CHILDREN, Metrics
from ashd.store.timestamps import utc_now

Crashed = Callable[[str], object]
"""Called by a child (on its own thread, from ``on_failure``) with why it crashed."""


@dataclass(frozen=True)
class ChildSpec:
    """One child of the root, in start order.

    ``start(crashed)`` returns the child's handle (an ``ActorRef`` for actors) and hands the
    child ``crashed`` to call when it dies of an exception, once its cleanup is done;
    ``ping(handle, timeout_s)`` says whether it answers; ``stop(handle, timeout_s)`` stops it
    (idempotent, never raises) and returns False if it had stopped already (crashed).
    ``restartable`` children are restarted after a crash (rest_for_one over the restartable
    ones after it); the others reach the actors through the registry and are left running.
    """

    name: str
    start: Callable[[Crashed], Any]
    ping: Callable[[Any, float], bool]
    stop: Callable[[Any, float], bool]
    restartable: bool = True


def actor_ping(ask: Callable[[Any], pykka.Future[Any]]) -> Callable[[Any, float], bool]:
    """A ping that asks ``ask(proxy)`` and wants an answer within the timeout."""

    def ping(ref: pykka.ActorRef[Any], timeout_s: float) -> bool:
        try:
            ask(ref.proxy()).get(timeout=timeout_s)
        except (pykka.ActorDeadError, pykka.Timeout):
            return False
        return True

    return ping


def actor_stop(ref: pykka.ActorRef[Any], timeout_s: float) -> bool:
    try:
        return bool(ref.stop(timeout=timeout_s))
    except pykka.ActorDeadError:
        return False
    except pykka.Timeout:
        return True  # it was alive; it goes on stopping on its own thread


class ChildRegistry:
    """The current handle of each child by name (the root writes, everyone reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._proxies: dict[str, pykka.ActorProxy[Any]] = {}  # per name, for its current handle

    def put(self, name: str, handle: Any) -> None:
        with self._lock:
            self._handles[name] = handle

    def remove(self, name: str) -> Any:
        """Forget ``name`` (it was stopped); returns its handle, or None."""
        with self._lock:
            return self._handles.pop(name, None)

    def get(self, name: str) -> Any:
        with self._lock:
            return self._handles.get(name)

    def proxy(self, name: str) -> pykka.ActorProxy[Any]:
        """A proxy to the current actor of ``name``. Raises Unavailable (503) while it is
        not running (being restarted, or failed)."""
        ref = self.get(name)
        try:
            if ref is None or not ref.is_alive():
                raise pykka.ActorDeadError(name)
            with self._lock:
                return proxy_once(self._proxies, name, ref)
        except pykka.ActorDeadError:
            raise Unavailable(f"ashd's {name} is restarting; retry shortly", retry_after_s=1) from None


def proxy_once(proxies: dict[str, pykka.ActorProxy[Any]], key: str, ref: pykka.ActorRef[Any]) -> pykka.ActorProxy[Any]:
    """``ref``'s proxy, kept in ``proxies`` under ``key`` and made again only for another actor:
    pykka introspects the whole actor for every new proxy (0.5-1 ms of CPU, which each create,
    health check, pre-warm and turn paid)."""
    proxy = proxies.get(key)
    if proxy is None or proxy.actor_ref is not ref:
        proxy = proxies[key] = ref.proxy()
    return proxy


@dataclass(frozen=True)
class FailedChild:
    child: str
    reason: str
    at: str  # ISO-8601 UTC

    def to_json(self) -> dict[str, str]:
        return {"child": self.child, "reason": self.reason, "at": self.at}


class SupervisionRecord:
    """Restarts per child and the children given up on; counted in /metrics as well."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._lock = threading.Lock()
        self._metrics = metrics or Metrics()
        self._restarts: dict[str, int] = dict.fromkeys(TREE_CHILDREN, 0)
        self._failed: list[FailedChild] = []
        self.gave_up: str | None = None  # why the root gave up (ashd is exiting), else None

    def restarted(self, child: str) -> None:
        with self._lock:
            self._restarts[child] = self._restarts.get(child, 0) + 1
        self._metrics.actor_restarts.labels(child).inc()

    def failed(self, child: str, reason: str) -> None:
        with self._lock:
            self._failed.append(FailedChild(child, reason, utc_now()))
        self._metrics.actor_failed.labels(child).set(1)

    def give_up(self, reason: str) -> None:
        with self._lock:
            self.gave_up = reason

    def to_json(self) -> dict[str, Any]:
        """/health's ``supervision`` object."""
        with self._lock:
            return {"restarts": dict(self._restarts), "failedChildren": [f.to_json() for f in self._failed],
                    "gaveUp": self.gave_up}

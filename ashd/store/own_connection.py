"""What the store's connections of their own share (outside the pool, on threads of their own):
the fan-out's listener (``notify.py``), a coordinator's liveness lock (``coordinators.py``) and
its session leases (``leases.py``): TCP keepalives, advisory-lock keys, and the loop that opens
a lost connection again with capped exponential backoff. Pure apart from :func:`run_reconnecting`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import psycopg

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
# A connection that only listens or idles would never notice a vanished peer without keepalives.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
              "connect_timeout": 5}


def advisory_key(namespace: str, name: str) -> int:
    """A Postgres advisory-lock key: a signed 64-bit hash of ``namespace`` + ``name``."""
    return int.from_bytes(hashlib.sha256((namespace + name).encode()).digest()[:8], "big", signed=True)


def run_reconnecting(stop: threading.Event, serve: Callable[[], None], log: logging.Logger, what: str,
                     level: int = logging.WARNING) -> None:
    """Call ``serve`` (one connection's life) until ``stop`` is set. After a database error,
    again after a capped exponential backoff (logged at ``level``, naming ``what``); after any
    other error (a bug, say in a callback), again after :data:`RETRY_MAX_S`, so it never ends
    for good. Blocking: the connection's own thread."""
    failures = 0
    while not stop.is_set():
        try:
            serve()
            failures = 0
        except psycopg.Error as exc:
            text = str(exc).strip()
            log.log(level, "%s failed (%s); reconnecting", what, text.splitlines()[0] if text else type(exc).__name__)
            stop.wait(min(RETRY_INITIAL_S * 2 ** failures, RETRY_MAX_S))
            failures += 1
        except Exception:  # boundary: a bug must not end it for good
            log.exception("%s: its thread failed; restarting it", what)
            stop.wait(RETRY_MAX_S)

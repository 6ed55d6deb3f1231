"""Recent agent-process exits, by pid, for the data plane (thread-safe, bounded).

A pid names one process here: local bridges' pids are the host's; a coordinator's remote
processes get numbers unique in the coordinator (ashd/sandbox/remote.py), never the runners'
pids, which collide across runners.

The exit watcher of a sandbox records each exit (with the launcher's reason, e.g. an OOM
kill) the moment it happens; a turn whose bridge connection dropped waits here, briefly,
to tell its client why instead of a bare "exited unexpectedly".
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ashd.actors.messages import BridgeExited

KEEP = 1024


class ExitBoard:
    def __init__(self) -> None:
        self._facts: OrderedDict[int, BridgeExited] = OrderedDict()
        self._changed = threading.Condition()

    def record(self, pid: int, fact: BridgeExited) -> None:
        with self._changed:
            self._facts[pid] = fact
            while len(self._facts) > KEEP:
                self._facts.popitem(last=False)
            self._changed.notify_all()

    def get(self, pid: int) -> BridgeExited | None:
        """The exit of ``pid`` if it is recorded already. Never blocks beyond the lock."""
        with self._changed:
            return self._facts.get(pid)

    def wait(self, pid: int, timeout: float) -> BridgeExited | None:
        """The exit of ``pid``, waiting up to ``timeout`` seconds for it. Blocking."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._facts, timeout)
            return self._facts.get(pid)

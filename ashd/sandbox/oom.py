"""Push notification of OOM kills in sandbox cgroups (no polling).

v1: an eventfd registered on ``cgroup.event_control`` for ``memory.oom_control`` fires on
each OOM (and once when the group is removed). v2: ``memory.events`` signals POLLPRI when it
changes. One watcher thread serves every sandbox with one epoll set; the callback runs on
that thread with the new ``oom_kill`` count and must not block.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ashd.sandbox.cgroups import SandboxCgroup

log = logging.getLogger(__name__)

OnOom = Callable[[int], None]
SETTLE_S = 0.5


@dataclass
class _Watch:
    cgroup: SandboxCgroup
    on_oom: OnOom
    fds: tuple[int, ...]
    seen: int = 0


class OomWatcher:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._by_fd: dict[int, _Watch] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="oom-watcher", daemon=True)
        self._thread.start()

    def watch(self, cgroup: SandboxCgroup, on_oom: OnOom) -> None:
        """Start watching; raises OSError if the cgroup files cannot be opened."""
        if cgroup.layout.mode == "v2":
            fd = os.open(cgroup.memory_dir / "memory.events", os.O_RDONLY | os.O_CLOEXEC)
            fds: tuple[int, ...] = (fd,)
            key, mask = fd, select.EPOLLPRI | select.EPOLLERR
        else:
            efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            ofd = os.open(cgroup.memory_dir / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:
                with open(cgroup.memory_dir / "cgroup.event_control", "w") as ctl:
                    ctl.write(f"{efd} {ofd}")
            except OSError:
                os.close(efd)
                os.close(ofd)
                raise
            fds, key, mask = (efd, ofd), efd, select.EPOLLIN
        with self._lock:
            self._by_fd[key] = _Watch(cgroup, on_oom, fds, cgroup.oom_kills())
            self._epoll.register(key, mask)

    def unwatch(self, cgroup: SandboxCgroup) -> None:
        """Stop watching (idempotent; never raises)."""
        with self._lock:
            for key, watch in list(self._by_fd.items()):
                if watch.cgroup is cgroup:
                    del self._by_fd[key]
                    try:
                        self._epoll.unregister(key)
                    except (OSError, ValueError):
                        pass
                    for fd in watch.fds:
                        os.close(fd)

    def close(self) -> None:
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed:
            for key, _events in self._epoll.poll():
                if key == self._wake_r:
                    continue
                self._fire(key)

    def _fire(self, key: int) -> None:
        with self._lock:
            watch = self._by_fd.get(key)
        if watch is None:
            return
        if watch.cgroup.layout.mode != "v2":
            try:
                os.eventfd_read(key)
            except BlockingIOError:
                pass
        # The notification comes when the group hits OOM; the kill (and its counter) follows
        # within milliseconds. Re-read briefly rather than miss it.
        deadline = time.monotonic() + SETTLE_S
        while (kills := watch.cgroup.oom_kills()) <= watch.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        if kills > watch.seen:
            watch.seen = kills
            try:
                watch.on_oom(kills)
            except Exception:
                log.exception("OOM callback failed")
        elif not watch.cgroup.memory_dir.exists():
            self.unwatch(watch.cgroup)  # v1 signals once more when the group is removed

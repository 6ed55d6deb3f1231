"""Disk admission: a workspace image is made only if the data disk can give all of it.

Workspace images (:mod:`ashd.sandbox.quota`) are sparse: made nearly empty, they grow as the
agent writes, up to their quota. Nothing stopped N quotas from adding up to more than the
data disk, so agents writing their quota could fill the disk that the store shares and fail
a neighbour's turn. ashd promises only the disk that is there::

    quota of the new image  <=  free    (f_bavail of the data dir's file system)
                              - reserve (max(disk_reserve_mb, disk_reserve_percent of the disk))
                              - claimed (what existing images may still grow into:
                                         apparent size - allocated blocks)
                              - pending (quotas of admitted images not made yet)

An image "may still grow" while its sandbox is live in the pool or its session is not ended
(paused, stopped and failed sessions keep their image and resume into it). An ended session's
image never mounts again: its blocks are already out of ``free`` and it claims no more.

:class:`DiskFigures` and :func:`refusal` are pure. :class:`DiskLedger` measures the disk; the
pool actor calls :meth:`DiskLedger.admit` on its own thread before every sandbox whose image
does not exist yet, so two creates never pass on the same free space (the second one counts
the first as pending). Blocking: one statvfs, one stat per image, one store read.

A runner's transfers write files on the same disk (an upload spooled before it is committed
into a workspace, a workspace bundled for download, an agent's archive and its extraction):
each write is admitted by the same rule first (:meth:`DiskLedger.admit_transient`) and held as
pending while it is written, so neither side passes on the other's free space.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ashd.config import Config
from ashd.errors import InsufficientStorage
from ashd.layout import Layout
from ashd.sandbox.quota import IMAGE_NAME
from ashd.snapshot.room import DiskFloor
from ashd.states import SessionStatus
from ashd.store import Store

log = logging.getLogger(__name__)

MIB = 1 << 20
_MAY_RESUME = tuple(s.value for s in SessionStatus if s is not SessionStatus.ENDED)


@dataclass(frozen=True)
class DiskFigures:
    """The data disk at one instant, in bytes."""

    free: int
    reserve: int
    claimed: int  # existing images' room to grow
    pending: int  # admitted images not made yet
    images: int = 0  # how many existing images claim room

    @property
    def headroom(self) -> int:
        """What one more image may take without breaking an earlier promise or the reserve."""
        return self.free - self.reserve - self.claimed - self.pending


def reserve_bytes(disk_total: int, reserve_mb: int, reserve_percent: float) -> int:
    """The reserve: the larger of a fixed size and a share of the whole disk."""
    return max(reserve_mb * MIB, int(disk_total * reserve_percent / 100))


def growth(apparent: int, allocated: int) -> int:
    """What a sparse image of ``apparent`` bytes with ``allocated`` bytes on disk may still take."""
    return max(0, apparent - allocated)


def refusal(quota: int, figures: DiskFigures) -> str | None:
    """None if an image of ``quota`` bytes fits; else the client's message saying what to free or
    lower. It names no host path and no daemon-wide figure (those are other tenants' business;
    :func:`describe` is for the operator's log)."""
    if quota <= figures.headroom:
        return None
    return (
        f"Not enough disk for another workspace: its image may grow to {_mib(quota)}, more than ashd's data "
        "disk can promise beside the workspaces it already holds and the room kept for the store and snapshots "
        "(sandbox.disk_reserve_mb / disk_reserve_percent). Free space on that disk, end sessions you no longer "
        "need (an ended session's workspace claims no more), or lower sandbox.disk_mb (ASH_SANDBOX_DISK_MB) or "
        "the session's limits.diskMb."
    )


TRANSIENT_REFUSAL = (
    "Not enough disk on the runner for this file transfer (a file, a workspace bundle or the agent's folder) beside "
    "the workspaces it holds and the room kept for its store: retry later, send smaller files, or end sessions you "
    "no longer need."
)


def describe(figures: DiskFigures) -> str:
    """The figures behind a decision, for the operator's log."""
    return (f"{_mib(figures.free)} free, {_mib(figures.reserve)} reserve, {_mib(figures.claimed)} claimed by "
            f"{figures.images} image(s), {_mib(figures.pending)} pending: {_mib(figures.headroom)} to promise")


def _mib(n: int) -> str:
    return f"{max(n, 0) / MIB:.0f} MiB"


class DiskLedger:
    """Measures the data disk for the pool actor; not thread-safe (one caller: that actor)."""

    def __init__(self, layout: Layout, store: Store, reserve_mb: int, reserve_percent: float) -> None:
        self.data_dir = layout.data_dir
        self._layout = layout
        self._store = store
        self._reserve_mb = reserve_mb
        self._reserve_percent = reserve_percent

    def admit(self, sandbox_id: str, quota_mb: int, pending: Mapping[str, int], live: Collection[str]) -> None:
        """Allow an image of ``quota_mb`` for ``sandbox_id`` or raise InsufficientStorage.

        ``pending``: sandbox id -> quota bytes of images admitted but not made yet;
        ``live``: ids of sandboxes the pool holds (their images may grow, whatever the store says).
        """
        figures = self._measure(pending, live)
        message = refusal(quota_mb * MIB, figures)
        if message is not None:
            log.warning("sandbox %s refused a %d MiB workspace image on %s (%s)", sandbox_id, quota_mb,
                        self.data_dir, describe(figures))
            raise InsufficientStorage(message, 60)

    def admit_transient(self, nbytes: int, pending: Mapping[str, int], live: Collection[str]) -> None:
        """Allow ``nbytes`` more of a transient file on the data disk (a runner's spooled upload
        or bundled download) or raise InsufficientStorage. It takes from the headroom a new image
        would, so it never eats what an image was promised or the reserve."""
        figures = self._measure(pending, live)
        if nbytes > figures.headroom:
            log.warning("a file transfer of %s refused on %s (%s)", _mib(nbytes), self.data_dir, describe(figures))
            raise InsufficientStorage(TRANSIENT_REFUSAL, 30)

    def _measure(self, pending: Mapping[str, int], live: Collection[str]) -> DiskFigures:
        try:
            return self.figures(pending, live)
        except OSError as exc:  # fail closed: an unmeasured disk promises nothing
            log.error("cannot measure the data disk (%s): %s; refusing new workspaces", self.data_dir, exc)
            raise InsufficientStorage("cannot measure ashd's data disk; no new workspace is admitted until it "
                                      "can (see ashd's log)", 60) from exc

    def figures(self, pending: Mapping[str, int], live: Collection[str]) -> DiskFigures:
        """Measure now. Raises OSError if the data dir cannot be measured."""
        st = os.statvfs(self.data_dir)
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        claimed, images = 0, 0
        for sandbox_id in self._may_grow(live):
            if sandbox_id in pending:
                continue
            try:
                image = (self._layout.sandbox_dir(sandbox_id) / IMAGE_NAME).stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            claimed += growth(image.st_size, image.st_blocks * 512)
            images += 1
        return DiskFigures(free, reserve_bytes(total, self._reserve_mb, self._reserve_percent), claimed,
                           sum(pending.values()), images)

    def _may_grow(self, live: Collection[str]) -> set[str]:
        rows = self._store.list_sessions_by_status(_MAY_RESUME)
        return {row.sandbox_id or row.id for row in rows} | set(live)


def store_floor(config: Config) -> DiskFloor:
    """Half the disk reserve is the store's alone: snapshots (and the API's workspace bundles)
    may use the other half."""
    sb = config.sandbox
    st = os.statvfs(config.data_dir)
    return DiskFloor(config.data_dir, reserve_bytes(st.f_blocks * st.f_frsize, sb.disk_reserve_mb,
                                                    sb.disk_reserve_percent) // 2)

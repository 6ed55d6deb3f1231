"""Everything a handler needs, built once by the daemon (loop thread only)."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ashd.config import Config, allowed_origins
from ashd.errors import InsufficientStorage
from ashd.files.live import RemoteLookup
from ashd.files.sessions import SessionFiles
from ashd.http.auth import KeyHasher
from ashd.http.bundle_room import BundleRoom
from ashd.http.cors import CorsPolicy
from ashd.http.keycache import KeyCache
from ashd.http.ratelimit import RateLimiter
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.runtime.facade import SessionRuntime
from ashd.runtime.offload import Offload
from ashd.sandbox.admission import store_floor
from ashd.snapshot.room import DiskFloor
from ashd.snapshot.store import blob_store_from_url
from ashd.store import Store, utc_now

if TYPE_CHECKING:
    from ashd.evals.runner import EvalRunner


@dataclass
class AppContext:
    config: Config
    store: Store
    runtime: SessionRuntime  # every session operation goes through it (never an actor)
    offload: Offload  # store reads and writes off the loop
    hasher: KeyHasher
    started_at: float = field(default_factory=time.monotonic)
    started_utc: str = field(default_factory=utc_now)  # the same moment as a stored timestamp
    metrics: Metrics = field(default_factory=Metrics)
    queue_wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # set when an item is queued
    eval_runner: EvalRunner | None = None  # set by the daemon once serving (POST eval-runs: 503 without)
    stopping: bool = False  # set by the daemon when a graceful stop begins (/health/ready -> 503)
    remote_files: RemoteLookup | None = None  # a coordinator's: live workspaces are on runners

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.config.rate_limit)  # loop thread only
        self.keys = KeyCache()  # authenticated keys, briefly (loop thread only; see keycache.py)
        self.cors = CorsPolicy(allowed_origins(self.config.server))

    @property
    def layout(self) -> Layout:
        return Layout(self.config.data_dir)

    @functools.cached_property
    def disk_floor(self) -> DiskFloor:
        """The store's floor on the data disk: half the disk reserve, as for snapshots."""
        return store_floor(self.config)

    @functools.cached_property
    def bundle_room(self) -> BundleRoom:
        """What workspace bundles may take of the data disk at once (ashd/http/bundle_room.py)."""
        return BundleRoom(self.disk_floor)

    def keep_floor(self, nbytes: int, what: str) -> None:
        """Raise InsufficientStorage (507) if writing ``nbytes`` more of ``what`` would take the
        data disk into the store's floor. A statvfs."""
        floor = self.disk_floor
        if not floor.room_for(nbytes):
            raise InsufficientStorage(f"the data disk is too full to store {what}: its last {floor.min_free >> 20} "
                                      "MiB are kept for the database. Retry later", 30)

    @functools.cached_property
    def session_files(self) -> SessionFiles:
        """Where a session's files are (live sandbox or snapshot); built on first use."""
        snap = self.config.snapshot
        blobs = blob_store_from_url(snap.url or None, self.config.data_dir,
                                    endpoint_url=snap.s3_endpoint or None, region=snap.s3_region or None)
        return SessionFiles(self.store, self.layout, blobs, self.config.data_dir / "tmp", self.remote_files)

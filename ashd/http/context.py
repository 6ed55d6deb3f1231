"""Everything a handler needs, built once by the daemon (loop thread only)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ashd.actors.supervisor import Tree
from ashd.config import Config, allowed_origins
from ashd.files.sessions import SessionFiles
from ashd.runtime.offload import Offload
from ashd.http.auth import KeyHasher
from ashd.http.cors import CorsPolicy
from ashd.runtime.following import TurnBell
from ashd.runtime.links import Links
from ashd.http.ratelimit import RateLimiter
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.snapshot.store import blob_store_from_url
from ashd.store import Store, utc_now

if TYPE_CHECKING:
    from ashd.evals.runner import EvalRunner
    from ashd.runtime.turn import Turn


@dataclass
class AppContext:
    config: Config
    store: Store
    tree: Tree
    offload: Offload
    hasher: KeyHasher
    started_at: float = field(default_factory=time.monotonic)
    started_utc: str = field(default_factory=utc_now)  # the same moment as a stored timestamp
    heartbeat_s: float = 15.0
    turns: set[asyncio.Future[None]] = field(default_factory=set)
    live_turns: dict[str, Turn] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    queue_wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # set when an item is queued
    eval_runner: EvalRunner | None = None  # set by the daemon once serving (POST eval-runs: 503 without)
    # Binds a turn's own maxBudgetUsd at the model proxy: (sandbox id, budget or None).
    # None: this launcher has no model proxy (sandbox.isolation = none).
    limit_turn: Callable[[str, float | None], None] | None = None
    stopping: bool = False  # set by the daemon when a graceful stop begins (/health/ready -> 503)

    def __post_init__(self) -> None:
        self.links = Links(self.store, self.offload)
        self.limiter = RateLimiter(self.config.rate_limit)  # loop thread only
        self.cors = CorsPolicy(allowed_origins(self.config.server))
        self.turn_bell = TurnBell()  # wakes streams that follow a session across turns

    def notice(self, session_id: str, payload: dict[str, Any]) -> None:
        """A sandbox event for a session (loop thread): shown on its running turn, if any."""
        if payload.get("type") == "sandbox_oom":
            self.tree.logs.system(session_id, str(payload.get("message")))
        turn = self.live_turns.get(session_id)
        if turn is not None:
            turn.notice(payload)

    def start_turn(self, turn: Turn) -> None:
        """Run a turn as a task; it is findable by session id until it ends."""
        self.live_turns[turn.session_id] = turn
        task = asyncio.ensure_future(turn.run())
        self.turns.add(task)
        self.turn_bell.ring(turn.session_id)

        def finished(_: asyncio.Future[None]) -> None:
            self.turns.discard(task)
            if self.live_turns.get(turn.session_id) is turn:
                del self.live_turns[turn.session_id]

        task.add_done_callback(finished)

    @property
    def layout(self) -> Layout:
        return Layout(self.config.data_dir)

    @functools.cached_property
    def session_files(self) -> SessionFiles:
        """Where a session's files are (live sandbox or snapshot); built on first use."""
        snap = self.config.snapshot
        blobs = blob_store_from_url(snap.url or None, self.config.data_dir,
                                    endpoint_url=snap.s3_endpoint or None, region=snap.s3_region or None)
        return SessionFiles(self.store, self.layout, blobs, self.config.data_dir / "tmp")

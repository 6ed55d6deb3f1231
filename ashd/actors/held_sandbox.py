"""HeldSandbox: a session's live sandbox as its actor holds it, with its snapshots.

It holds the started sandbox (id, socket, pid) and the SandboxActor that owns its bridge, the
snapshot a pause, stop, end or fork waits for, and the one the last turn asked for. It gives
the sandbox back to the pool, removes the session's folder once the sandbox is torn down, and
detaches the bridge for a handover to another coordinator.

Threads: the session actor's only. ``release``, ``discard_folder``, ``hand_over`` and
``finish_after_turn`` block, each bounded by ``stop_timeout_s`` (plus one pool ask).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

import pykka

from ashd.actors.messages import Pending, SandboxStarted
from ashd.actors.sandbox import SandboxActor
from ashd.actors.session_deps import SessionDeps
from ashd.actors.snapshot_worker import SnapshotJob, SnapshotWorker
from ashd.sandbox import discard

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 10.0


class HeldSandbox:
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps, worker: SnapshotWorker) -> None:
        self._id = session_id
        self._tenant = tenant_id
        self._deps = deps
        self._worker = worker
        self.started: SandboxStarted | None = None  # the live sandbox; None: the session has none
        self._actor: pykka.ActorProxy[SandboxActor] | None = None
        self._settling: Future[None] | None = None  # the snapshot a pause/stop/end/fork waits for
        self._after_turn: Future[None] | None = None  # the last turn's snapshot, while it runs

    def take(self, started: SandboxStarted, actor: pykka.ActorProxy[SandboxActor] | None) -> None:
        """A start is over: ``started`` is the session's sandbox now."""
        self.started, self._actor = started, actor

    def forget(self) -> None:
        """The sandbox is gone (its process died, or it was handed over) without a release."""
        self.started = self._actor = None

    def release(self, grace_s: float | None = None, settle: bool = False) -> None:
        """Stop the bridge and wait for it here (bounded by ``stop_timeout_s``); ``settle``:
        also for the launcher's teardown of the sandbox (unmount, cgroups, uid), as bounded."""
        if self.started is None or self._actor is None:
            return
        try:
            self._actor.stop_bridge(grace_s).get(timeout=self._deps.stop_timeout_s)
        except pykka.ActorDeadError:
            pass  # already stopped by the pool after a crash
        if settle and self._deps.settle is not None and not self._deps.settle(
                self.started.sandbox_id, self._deps.stop_timeout_s):
            log.warning("session %s: sandbox %s still tearing down", self._id, self.started.sandbox_id)
        self._deps.pool.release(self.started.sandbox_id).get(timeout=ASK_TIMEOUT_S)
        self.forget()

    def discard_folder(self, sandbox_id: str) -> None:
        """Remove the session's sandbox folder once its last sandbox's teardown finished."""
        settle = self._deps.settle
        if settle is not None and not settle(sandbox_id, self._deps.stop_timeout_s):
            log.warning("session %s: sandbox %s still tearing down; its folder stays", self._id, sandbox_id)
            return
        discard.remove_sandbox_dir(self._deps.layout.sandbox_dir(sandbox_id))
        if self._deps.discard_elsewhere is not None:
            self._deps.discard_elsewhere(sandbox_id)

    def hand_over(self) -> None:
        """Give the live sandbox up without stopping it, after the last turn's snapshot is
        saved, so another coordinator adopts it warm on its runner. One that cannot be handed
        over (a local one, or the runner refused) is stopped instead."""
        if self.started is None or self._actor is None:
            return
        self.finish_after_turn()
        sandbox_id = self.started.sandbox_id
        try:
            detached = self._actor.detach_bridge().get(timeout=self._deps.stop_timeout_s)
        except Exception as exc:  # boundary: a sandbox not handed over is stopped
            log.warning("session %s: sandbox %s not handed over (%s); stopping it", self._id, sandbox_id, exc)
            detached = False
        if not detached:
            self.release()
            return
        self._deps.pool.release(sandbox_id).get(timeout=ASK_TIMEOUT_S)
        self.forget()
        log.info("session %s: handed its live sandbox %s over to another coordinator", self._id, sandbox_id)

    # -- snapshots -----------------------------------------------------------------

    def snapshot(self) -> Future[None]:
        """Ask the worker for a snapshot of the live workspace (coalesced per session)."""
        assert self.started is not None
        sandbox_id = self.started.sandbox_id
        workspace = self._deps.layout.sandbox_dir(sandbox_id) / "workspace"
        return self._worker.request(SnapshotJob(self._tenant, self._id, sandbox_id, workspace))

    def settle_snapshot(self, draft: bool) -> Pending | None:
        """None once a snapshot of the live workspace (asked by this call or the one it
        repeats) is complete; Pending until then. Nothing to save without a sandbox, or for an
        unclaimed pre-warm (``draft``)."""
        if draft or self.started is None:
            self._settling = None
            return None
        if self._settling is None:
            self._settling = self.snapshot()
        if not self._settling.done():
            return Pending(self._settling)
        self._settling = None
        return None

    @property
    def settling(self) -> bool:
        """A pause, stop, end or fork waits for a snapshot that is not complete yet."""
        return self._settling is not None and not self._settling.done()

    def files_changed(self) -> None:
        """A turn runs: a stop after it needs a new snapshot, not the one settled before."""
        self._settling = None

    def snapshot_after_turn(self) -> None:
        """A turn ended: save its files on the worker (the reply does not wait for it)."""
        if self.started is not None:
            self._after_turn = self.snapshot()

    def finish_after_turn(self) -> None:
        """Wait (bounded by ``stop_timeout_s``) for the last turn's snapshot, if one runs."""
        pending, self._after_turn = self._after_turn, None
        if pending is None:
            return
        try:
            pending.result(timeout=self._deps.stop_timeout_s)
        except Exception as exc:  # boundary: the files stay on the runner with the sandbox
            log.warning("session %s: the last turn's snapshot did not finish before the handover: %s", self._id, exc)

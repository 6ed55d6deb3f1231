"""PoolActor: owns every live SandboxActor; capacity, sandbox states, eviction, idle sweep.

Runs on its own pykka thread and never blocks on a sandbox starting or stopping:
``reserve`` only creates the SandboxActor and returns its proxy (the session actor that
asked drives the slow start on its own thread), and eviction and parking only *tell* the
owning session to persist and let go. Capacity is the smaller of ``max_sandboxes`` and
``max_warm_sessions`` (every live sandbox holds a CLI), and it holds strictly: a slot is
held from the moment a start is admitted until its processes are gone (a sandbox being
parked or stopped still holds its slot). A reservation at capacity waits (see :meth:`room`)
for a slot, and the least recently used idle sandbox is parked for it
(:mod:`ashd.actors.parking`); a running one never is (503 with Retry-After when every one
is running, or when no slot came free within ``ROOM_WAIT_S``, :mod:`ashd.actors.start`).
Idle ones are swept: parked after ``park_after_ms`` (an active session with no queued
prompt; its status stays active), evicted and paused after ``idle_timeout_ms``.
A sandbox whose owner actor is gone (it crashed, or its supervisor did) is an orphan and is
released at once (``release_orphans``, and at each sweep): no bridge outlives its owner.
If this actor crashes, ``on_failure`` stops every sandbox it owns and marks their rows cold
before the root starts a new pool (sessions cold-resume on their next message).
A sandbox whose workspace image does not exist yet is admitted against the data disk first
(:mod:`ashd.actors.pool_disk`; 507 when its quota does not fit); this actor is the one place
that admits, so two creates never pass on the same free space.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType

import pykka

from ashd.actors import parking
from ashd.actors.answers import answered_future
from ashd.actors.children import Crashed
from ashd.actors.exits import ExitBoard
from ashd.actors.faults import FaultTarget, crash_detail
from ashd.actors.messages import BridgeExited, PoolStats
from ashd.actors.pool_disk import PoolDisk
from ashd.actors.pool_members import LiveSandbox, SandboxOwner
from ashd.actors.sandbox import SandboxActor
from ashd.actors.session_facts import SessionFacts
from ashd.actors.tell import tell
from ashd.config import PoolConfig
from ashd.errors import Unavailable
from ashd.lifecycle import SandboxLifecycle
from ashd.sandbox.admission import MIB, DiskLedger
from ashd.sandbox.launcher import Launcher, SandboxSpec
from ashd.sandbox.logring import LogBook
from ashd.states import SandboxState
from ashd.store import SandboxRow, Store, StoreError
from ashd.store.timestamps import utc_now

log = logging.getLogger(__name__)

MIN_SWEEP_S = 0.25
LEAVE_WAIT_S = 15.0  # a sandbox told to leave this long ago is no longer counted on to free its slot
STOPPED_WAIT_S = 60.0  # beyond the stop grace: how long a dropped sandbox's processes may take to go


class PoolActor(FaultTarget, pykka.ThreadingActor):
    meminfo = Path("/proc/meminfo")  # where MemAvailable is read (memory pressure); tests point it elsewhere

    _create_future = staticmethod(answered_future)  # replies wake the loop (ashd/actors/answers.py)

    def __init__(self, config: PoolConfig, launcher: Launcher, store: Store, exits: ExitBoard | None = None,
                 logs: LogBook | None = None, disk: DiskLedger | None = None, default_disk_mb: int = 0,
                 crashed: Crashed | None = None, settle: Callable[[str, float], bool] | None = None) -> None:
        """``crashed``: told why, after the cleanup, if this actor dies of an exception.
        ``settle``: waits for a stopped sandbox's teardown (its processes gone, cgroups removed,
        unmounted; the launcher's ``settled``); None: the launcher has none (its stop is all)."""
        super().__init__()
        self._crashed = crashed
        self._disk = PoolDisk(disk, default_disk_mb)  # disk None: the launcher makes no images
        self._exits = exits
        self._logs = logs
        self._config = config
        self._launcher = launcher
        self._settle = settle
        self._store = store
        self._facts = SessionFacts(store)
        self._live: dict[str, LiveSandbox] = {}
        self._evicting: dict[str, float] = {}  # told to leave (parked or evicted): since when (monotonic)
        # Reservations waiting for a slot, first come first served: resolved when admitted.
        self._waiting: dict[str, Future[None]] = {}
        self._stopping = 0  # dropped sandboxes whose processes may still run: they hold a slot
        self.capacity = min(config.max_sandboxes, parking.warm_cap(config.max_warm_sessions))
        self._ticker: threading.Event | None = None
        self.resumes = {"warm": 0, "cold": 0}

    def on_start(self) -> None:
        stop = threading.Event()
        me = self.actor_ref.proxy()
        # Often enough that a session is parked close to park_after_ms.
        interval = min(self._config.sweep_interval_s, max(MIN_SWEEP_S, self._config.park_after_ms / 4000))
        log.info("pool: at most %d live sandboxes (warm sessions); idle sessions park after %.1fs",
                 self.capacity, self._config.park_after_ms / 1000)

        def tick() -> None:
            while not stop.wait(interval) and tell(me.sweep, context="idle sweep"):
                pass

        threading.Thread(target=tick, name="pool-sweep", daemon=True).start()
        self._ticker = stop

    def reserve(self, spec: SandboxSpec, owner: SandboxOwner) -> pykka.ActorProxy[SandboxActor]:
        """Reserve a slot for a new sandbox: admitted now if one is free, else it waits (see
        :meth:`room`) while an idle sandbox is parked for it. Raises Unavailable at capacity
        when no idle sandbox is left to park, InsufficientStorage when its workspace image is
        still to be made and its quota does not fit the data disk."""
        sandbox_id = spec.sandbox_id
        if sandbox_id in self._live:
            self._drop(sandbox_id)
        self._disk.admit(spec, self._specs())
        prewarm = self._facts.unclaimed(spec)
        self._waiting[sandbox_id] = Future()
        self._admit_waiting()
        if sandbox_id in self._waiting and (prewarm or not self._make_room()):
            del self._waiting[sandbox_id]
            if prewarm:  # never parks a session's CLI for a sandbox nobody asked for yet
                raise Unavailable(f"no pre-warm at the warm session cap ({self.capacity} live CLIs)", retry_after_s=5)
            raise Unavailable(
                f"All {self.capacity} warm sessions are running turns (pool.max_warm_sessions, "
                f"pool.max_sandboxes); retry shortly",
                retry_after_s=5,
            )
        me = self.actor_ref.proxy()
        abort = threading.Event()
        ref = SandboxActor.start(
            spec, self._launcher,
            lambda fact: tell(me.on_bridge_exited, fact, context=f"exit of the bridge of sandbox {fact.sandbox_id}"),
            self._config.bridge_ready_timeout_s, self._config.stop_grace_s, self._exits, self._logs, abort,
        )
        self._live[sandbox_id] = LiveSandbox(ref, spec, SandboxLifecycle(), owner, time.monotonic(), prewarm,
                                             abort=abort)
        self._persist(spec, SandboxState.WARMING)
        return ref.proxy()

    def room(self, sandbox_id: str) -> Future[None]:
        """Resolved once ``sandbox_id``'s reservation holds a slot, so a start never has more
        CLIs alive than the cap (the start thread waits on it before it spawns anything)."""
        waiting = self._waiting.get(sandbox_id)
        if waiting is not None:
            return waiting
        admitted: Future[None] = Future()
        admitted.set_result(None)
        return admitted

    def sandbox_stopped(self) -> None:
        """Told once a dropped sandbox's processes are gone: its slot is free."""
        self._stopping -= 1
        self._admit_waiting()

    def _used(self) -> int:
        """Slots held: admitted sandboxes (starting, live, leaving) and dropped ones still stopping."""
        return sum(1 for sandbox_id in self._live if sandbox_id not in self._waiting) + self._stopping

    def _admit_waiting(self) -> None:
        """Admit waiting reservations, oldest first, into the free slots."""
        free = self.capacity - self._used()
        for sandbox_id in list(self._waiting)[:max(free, 0)]:
            self._waiting.pop(sandbox_id).set_result(None)

    def _make_room(self) -> bool:
        """Park idle sandboxes, least recently used first, until every waiting reservation has
        one on its way out. False when too few are idle (every other one runs a turn)."""
        now = time.monotonic()
        leaving = sum(1 for sandbox_id, since in self._evicting.items()
                      if sandbox_id in self._live and now - since < LEAVE_WAIT_S)
        for _ in range(len(self._waiting) - leaving):
            victim = parking.least_recent(self._warm())
            if victim is None:
                return False
            self._leave(victim, "parked to make room (warm session capacity reached)", park=True)
        return True

    def promise_disk(self, sandbox_id: str, root: Path, disk_mb: int) -> None:
        """Admit a start's workspace image before the start queues (issue #18), so a create
        refused for disk is refused by its own answer (507), not at its first message. The
        quota (``disk_mb``, 0: the default) is held as pending for every other admission until
        :meth:`forget_disk`; the start's own :meth:`reserve` then admits nothing again. No-op
        when no image is to be made (it exists, or the launcher makes none). Raises
        InsufficientStorage."""
        self._disk.promise(sandbox_id, root, disk_mb, self._specs())

    def forget_disk(self, sandbox_id: str) -> None:
        """The start that held a promise is over (see :meth:`PoolDisk.forget`)."""
        self._disk.forget(sandbox_id)

    def _specs(self) -> dict[str, SandboxSpec]:
        return {sandbox_id: live.spec for sandbox_id, live in self._live.items()}

    def mark(self, sandbox_id: str, state: SandboxState) -> None:
        live = self._live.get(sandbox_id)
        if live is None:
            return
        if state is SandboxState.RUNNING:
            self._evicting.pop(sandbox_id, None)  # its owner kept it: in use again
        live.last_used = time.monotonic()
        try:
            changed = live.life.transition(state)
        except ValueError as exc:  # a late mark (e.g. of a turn whose sandbox was replaced)
            log.warning("sandbox %s: %s; ignored", sandbox_id, exc)
            return
        if changed and state is not SandboxState.RUNNING and not (state is SandboxState.WAITING and live.row_waiting):
            self._store.set_sandbox_state(sandbox_id, state.value)
            live.row_waiting = state is SandboxState.WAITING
        if self._waiting:  # a start waits for a slot: a session kept by its turn, or idle again
            self._make_room()

    def release(self, sandbox_id: str) -> None:
        """Stop a sandbox's bridge (TERM, grace, KILL) and forget it. Idempotent."""
        self._drop(sandbox_id)

    def on_bridge_exited(self, fact: BridgeExited) -> None:
        live = self._live.get(fact.sandbox_id)
        if live is None or fact.expected:
            return
        # An unexpected exit: the sandbox is gone; tell its session, keep the row as cold.
        self._drop(fact.sandbox_id)
        tell(live.owner.sandbox_lost, fact, context=f"loss of sandbox {fact.sandbox_id}")

    def release_orphans(self) -> int:
        """Release every sandbox whose owner actor is gone. Returns how many."""
        orphans = [sid for sid, live in self._live.items() if not live.owner.actor_ref.is_alive()]
        for sandbox_id in orphans:
            log.warning("sandbox %s of session %s has no owner any more; releasing it", sandbox_id,
                        self._live[sandbox_id].spec.session_id)
            self._drop(sandbox_id)
        return len(orphans)

    def sandbox_of(self, session_id: str) -> pykka.ActorProxy[SandboxActor] | None:
        """The live sandbox actor of a session (for the fault hook), or None."""
        return next((live.ref.proxy() for live in self._live.values()
                     if live.spec.session_id == session_id and live.ref.is_alive()), None)

    def sweep(self) -> int:
        """Release orphans; evict (pause) sandboxes idle longer than the idle timeout, park
        active sessions idle longer than ``park_after_ms``. Returns how many leave."""
        self.release_orphans()
        limit = self._config.idle_timeout_ms / 1000
        now = time.monotonic()
        idle = parking.due(self._warm(), now, limit, lambda _: False)
        for sandbox_id in idle:
            self._leave(sandbox_id, f"idle for more than {limit:.0f}s; resume to continue", park=False)
        after_s = self._config.park_after_ms / 1000
        parked = parking.due(self._warm(), now, after_s, self._keep_warm)
        for sandbox_id in parked:
            self._leave(sandbox_id, f"no turn for {after_s:.1f}s", park=True)
        return len(idle) + len(parked) + self._relieve_memory()

    def _relieve_memory(self) -> int:
        """Park idle sessions, least recently used first, while the host's memory is short."""
        floor = self._config.park_below_available_mb * MIB
        if floor == 0:
            return 0
        available = parking.available_bytes(self.meminfo)
        short = parking.relieve(self._warm(), available, floor, self._keep_warm)
        if short:
            log.warning("host memory is low (%d MiB available, under pool.park_below_available_mb = %d): "
                        "parking %d idle sessions, least recently used first, before the OOM killer has to act",
                        available // MIB, self._config.park_below_available_mb, len(short))
        for sandbox_id in short:
            self._leave(sandbox_id, "host memory is low", park=True)
        return len(short)

    def _warm(self) -> list[parking.Warm]:
        for live in self._live.values():
            if live.prewarm:
                live.prewarm = self._facts.unclaimed(live.spec)
        return [parking.Warm(sid, live.state, live.last_used, sid in self._evicting, live.prewarm)
                for sid, live in self._live.items()]

    def _keep_warm(self, sandbox_id: str) -> bool:
        return self._facts.keep_warm(self._live[sandbox_id].spec)

    def count_resume(self, path: str) -> None:
        self.resumes[path] = self.resumes.get(path, 0) + 1

    def _leave(self, sandbox_id: str, reason: str, *, park: bool) -> None:
        """Tell the owner to let its sandbox go: parked (stays active) or evicted (paused)."""
        live = self._live[sandbox_id]
        self._evicting[sandbox_id] = time.monotonic()
        verb = "parking" if park else "evicting"
        log.info("%s sandbox %s of session %s: %s", verb, sandbox_id, live.spec.session_id, reason)
        told = live.owner.park if park else live.owner.evict
        if not tell(told, sandbox_id, reason, context=f"{verb} sandbox {sandbox_id}"):
            self._drop(sandbox_id)  # its owner is gone: nobody else would ever release it

    def move_off(self, sandbox_ids: list[str], reason: str) -> int:
        """Told by the drain (ashd/actors/drain.py): tell the owner of each of these sandboxes
        that is idle (between turns, no prompt queued, not already leaving) to move it to
        another runner; a busy one is asked again at the drain's next look. How many were told."""
        now, told = time.monotonic(), 0
        for sandbox_id in sandbox_ids:
            live = self._live.get(sandbox_id)
            since = self._evicting.get(sandbox_id)
            if (live is None or live.state not in parking.IDLE_STATES
                    or (since is not None and now - since < LEAVE_WAIT_S) or self._facts.queued(live.spec)):
                continue
            self._evicting[sandbox_id] = now
            log.info("moving sandbox %s of session %s: %s", sandbox_id, live.spec.session_id, reason)
            if tell(live.owner.move, sandbox_id, reason, context=f"moving sandbox {sandbox_id}"):
                told += 1
            else:
                self._drop(sandbox_id)  # its owner is gone: nobody else would ever release it
        return told

    def stats(self) -> PoolStats:
        counts = {state: 0 for state in SandboxState}
        for live in self._live.values():
            counts[live.state] += 1
        return PoolStats(
            total=len(self._live),
            warming=counts[SandboxState.WARMING],
            warm=counts[SandboxState.WARM],
            running=counts[SandboxState.RUNNING],
            waiting=counts[SandboxState.WAITING],
            cold=counts[SandboxState.COLD],
            max_capacity=self.capacity,
            resume_warm=self.resumes.get("warm", 0),
            resume_cold=self.resumes.get("cold", 0),
        )

    def on_stop(self) -> None:
        self._stop_all()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        """Crashed: nobody will own these sandboxes any more. Stop them all (bridges killed,
        cgroups cleaned, rows cold), then tell the root, which starts a new pool."""
        try:
            self._stop_all()
        finally:
            if self._crashed is not None:
                self._crashed(crash_detail(exc))

    def _stop_all(self) -> None:
        """Stop every sandbox in parallel (each on its own actor thread), then wait."""
        if self._ticker is not None:
            self._ticker.set()
        for live in self._live.values():  # starts in progress end now, not at their ready timeout
            live.abort.set()
        futures = []
        for live in self._live.values():
            try:
                futures.append(live.ref.proxy().stop_bridge())
            except pykka.ActorDeadError:
                pass  # that sandbox actor crashed: its own on_failure killed the bridge
        for future in futures:
            try:
                future.get(timeout=self._config.stop_grace_s + 10)
            except Exception:  # boundary: shutdown must go on for the others
                log.exception("a sandbox did not stop cleanly")
        for sandbox_id in list(self._live):
            self._drop(sandbox_id)

    def _drop(self, sandbox_id: str) -> None:
        self._evicting.pop(sandbox_id, None)
        admitted = self._waiting.pop(sandbox_id, None) is None  # a waiting reservation started nothing
        live = self._live.pop(sandbox_id, None)
        if live is None:
            return
        live.abort.set()  # a start in progress ends at once (it would hold the sandbox actor)
        # Not waiting: the sandbox's own thread does TERM, grace, KILL; the pool stays free.
        stopped = live.ref.stop(block=False)
        if admitted:
            self._free_when_stopped(sandbox_id, stopped)
        try:
            self._store.set_sandbox_state(sandbox_id, SandboxState.COLD.value)
        except StoreError as exc:  # the row is a hint (marked cold at the next start anyway)
            log.warning("sandbox %s stopped, but its state was not stored: %s", sandbox_id, exc)

    def _free_when_stopped(self, sandbox_id: str, stopped: pykka.Future[bool]) -> None:
        """The slot stays held until the sandbox actor has stopped its bridge and the
        launcher's teardown is over (the sandbox's processes gone: a killed CLI can take a
        while to exit), both waited for on a thread of its own, so this actor never blocks."""
        if self._ticker is not None and self._ticker.is_set():
            return  # shutting down: no more starts to admit
        self._stopping += 1
        me = self.actor_ref.proxy()
        timeout_s = self._config.stop_grace_s + STOPPED_WAIT_S
        settle = self._settle

        def wait() -> None:
            deadline = time.monotonic() + timeout_s
            try:
                stopped.get(timeout=timeout_s)
            except pykka.Timeout:
                log.error("sandbox %s did not stop within %.0fs; its slot is given back", sandbox_id, timeout_s)
            except Exception:  # boundary: the slot must come back whatever the stop raised
                log.exception("sandbox %s stopped with an error; its slot is given back", sandbox_id)
            # False also once a newer start of the same sandbox is live: it waited for this teardown.
            if settle is not None:
                settle(sandbox_id, max(0.0, deadline - time.monotonic()))
            tell(me.sandbox_stopped, context=f"the slot of sandbox {sandbox_id}")

        threading.Thread(target=wait, name=f"stopped-{sandbox_id[:8]}", daemon=True).start()

    def _persist(self, spec: SandboxSpec, state: SandboxState) -> None:
        now = utc_now()
        self._store.upsert_sandbox(SandboxRow(
            id=spec.sandbox_id, tenant_id=spec.tenant_id, session_id=spec.session_id,
            agent_name=spec.agent_name, state=state.value, workspace_dir=str(spec.workspace),
            created_at=now, last_used_at=now,
        ))

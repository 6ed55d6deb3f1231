"""SessionActor: one live session — its state machine, its sandbox, one turn at a time.

Runs on its own pykka thread; every method is called through a proxy and may block that
thread (store writes, a sandbox start, a snapshot) but never the IOLoop. Status changes
happen only in :meth:`_transition`, which validates against ``states.py``, persists and
logs together.

Supervision: every start and unexpected exit of the agent process is recorded in this
session's ``ChildHistory`` and judged by the shared :class:`RestartGovernor` (restart with
backoff, give up -> ``error`` with a reason, or escalate when ashd's budget is spent).
Cold start of a session that has no workspace on this machine: files from the latest
snapshot (else a fresh copy of the agent), conversation from the stored transcript.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pykka

from ashd.actors.faults import FaultTarget, crash_detail
from ashd.actors.messages import BridgeExited, SandboxStarted, TurnGrant
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.sandbox import SandboxActor
from ashd.actors.vitals import StartRecord
from ashd.bridge.settings import BridgeSettings
from ashd.config import ModelConfig, SandboxConfig, Secret
from ashd.errors import (
    AshError,
    BadRequest,
    Conflict,
    NotFound,
    SandboxFailed,
    SnapshotError,
    SnapshotSkipped,
    SnapshotTooLarge,
    Unavailable,
)
from ashd.files import agent_folder
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.options import SessionOptions
from ashd.policy import ChildHistory, Escalate, GiveUp, Restart
from ashd.sandbox import discard, limits, resume, workspace
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launcher import SandboxSpec
from ashd.snapshot.fingerprint import workspace_digest
from ashd.snapshot.snapshots import Snapshotter
from ashd.states import SandboxState, SessionStatus, check_session_transition
from ashd.store import AgentRow, SessionRow, Store, StoreError, utc_now
from ashd.vault import CredentialVault

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SessionDeps:
    store: Store
    pool: pykka.ActorProxy[PoolActor]
    layout: Layout
    model: ModelConfig
    sandbox: SandboxConfig
    ready_timeout_s: float
    stop_timeout_s: float
    snapshots: Snapshotter
    restarts: RestartGovernor
    cli_workspace: str | None = None  # the workspace path as the CLI sees it, if remapped
    metrics: Metrics = field(default_factory=Metrics)
    credential_key: Secret = field(default_factory=lambda: Secret(""))  # ASH_CREDENTIAL_KEY (ashd/vault.py)
    # Waits for a sandbox's teardown to finish (the launcher's ``settled``); None: nothing to wait for.
    settle: Callable[[str, float], bool] | None = None
    starts: StartRecord = field(default_factory=StartRecord)  # every start's outcome, for /health
    # Told (session id, tenant id, why) when the actor crashed; set by the session supervisor.
    crashed: Callable[[str, str, str], object] | None = None


class SessionActor(FaultTarget, pykka.ThreadingActor):
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps) -> None:
        super().__init__()
        self._id = session_id
        self._tenant = tenant_id
        self._deps = deps
        self._row: SessionRow | None = None
        self._sandbox: SandboxStarted | None = None
        self._sandbox_actor: pykka.ActorProxy[SandboxActor] | None = None
        self._busy = False
        self._history = ChildHistory()
        self._not_before = 0.0
        self._draft = False  # pre-warmed, not yet a session (no database row)
        self._cold_source = "fresh"  # where the last start's workspace came from: local|cloud|fresh
        self._saved: tuple[str, str] | None = None  # (sandbox id, workspace digest) of the last snapshot

    # -- lifecycle ---------------------------------------------------------

    def warm_up(self, agent: AgentRow) -> bool:
        """Pre-warm: start a sandbox for ``agent`` before any session exists (no row yet).

        The sandbox is built from the agent alone (tenant, folder, agent env): nothing of a
        session. Returns False (and logs) if it could not start.
        """
        now = utc_now()
        self._row = SessionRow(self._id, self._tenant, agent.name, self._id, SessionStatus.STARTING.value,
                               None, None, None, SessionOptions().to_json(), now, now)
        self._draft = True
        try:
            self._ensure_sandbox()
        except Exception as exc:  # boundary: a failed pre-warm only costs the pre-warm
            log.warning("pre-warm of agent %s failed: %s", agent.name, exc)
            self._sandbox = None
            self._discard_folder()
            return False
        return True

    def on_stop(self) -> None:
        """An unclaimed pre-warm leaves nothing behind (its folder has no session's files)."""
        if self._draft:
            self._drop_draft()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        """Crashed (an exception in a told message): give the sandbox back at once, so no
        bridge outlives its owner, then tell the supervisor (the next request gets a new actor)."""
        try:
            self._release_sandbox(grace_s=0.0)
        except Exception:  # boundary: the supervisor must hear of the crash all the same
            log.exception("session %s: sandbox not released after a crash", self._id)
        finally:
            if self._deps.crashed is not None:
                self._deps.crashed(self._id, self._tenant, crash_detail(exc))

    def _drop_draft(self) -> None:
        try:
            self._release_sandbox()
        except Exception:  # boundary: shutdown and eviction go on
            log.exception("pre-warmed sandbox %s did not stop cleanly", self._id)
            return
        self._discard_folder()

    def claim(self, agent: AgentRow) -> SessionRow:
        """Turn this pre-warmed actor into a real session of ``agent`` (default options)."""
        if not self._draft or self._sandbox is None:
            raise Conflict("this pre-warmed sandbox is no longer available")
        self._draft = False
        self._row = self._deps.store.create_session(
            tenant_id=self._tenant, session_id=self._id, agent_name=agent.name,
            status=SessionStatus.STARTING.value, sandbox_id=self._id, config=SessionOptions().to_json(),
        )
        return self._transition(SessionStatus.ACTIVE, "claimed a pre-warmed sandbox")

    @property
    def warm(self) -> bool:
        return self._draft and self._sandbox is not None

    def create(self, agent: AgentRow, options: SessionOptions) -> SessionRow:
        """Insert the session, start its sandbox, and make it active.

        Raises Unavailable at capacity and SandboxFailed if the agent process cannot start
        (after the restart policy's retries); the session is then ``error`` with the reason.
        """
        self._row = self._deps.store.create_session(
            tenant_id=self._tenant, session_id=self._id, agent_name=agent.name,
            status=SessionStatus.STARTING.value, sandbox_id=self._id,
            model=options.model, config=options.to_json(),
        )
        try:
            self._ensure_sandbox()
        except Exception as exc:  # boundary: whatever stopped the start, the session ends in error
            self._fail_create(exc)
            raise
        return self._transition(SessionStatus.ACTIVE, "sandbox ready")

    def _fail_create(self, exc: Exception) -> None:
        """A create that did not reach ACTIVE leaves nothing on the host (no process, mount,
        cgroup, uid, and no sandbox folder: nothing ran in it). Refused before anything ran
        (Unavailable: capacity, disk; the caller gets 503/507 and retries): like Ash, no
        session row either. Failed: STARTING -> ERROR, with why."""
        try:
            self._release_sandbox()
            if isinstance(exc, Unavailable):
                self._deps.store.delete_session(self._tenant, self._id)
                self._row = None
            elif self._load().status != SessionStatus.ERROR.value:
                reason = exc.message if isinstance(exc, AshError) else f"sandbox start failed: {exc}"
                self._transition(SessionStatus.ERROR, reason)
        except Exception:  # boundary: the caller gets the original failure
            log.exception("session %s: failed create not fully recorded", self._id)
        self._discard_folder()

    def _discard_folder(self) -> None:
        """Remove this session's sandbox folder once its last sandbox's teardown finished."""
        sandbox_id = (self._row.sandbox_id if self._row is not None else None) or self._id
        settle = self._deps.settle
        if settle is not None and not settle(sandbox_id, self._deps.stop_timeout_s):
            log.warning("session %s: sandbox %s still tearing down; its folder stays", self._id, sandbox_id)
            return
        discard.remove_sandbox_dir(self._deps.layout.sandbox_dir(sandbox_id))

    def pause(self) -> SessionRow:
        """ACTIVE -> PAUSED: the workspace is snapshotted; a live sandbox is kept (warm resume)."""
        self._idle_or_conflict("paused")
        check_session_transition(SessionStatus(self._load().status), SessionStatus.PAUSED)
        self._snapshot()
        return self._transition(SessionStatus.PAUSED, "paused by request")

    def resume(self) -> SessionRow:
        """PAUSED|STOPPED|ERROR|STARTING -> ACTIVE, warm if the sandbox lives, else cold
        (files from the snapshot, conversation from the store). ACTIVE is a no-op; ENDED is 410."""
        row = self._load()
        if row.status == SessionStatus.ACTIVE.value:
            return row
        check_session_transition(SessionStatus(row.status), SessionStatus.ACTIVE)
        if row.status == SessionStatus.ERROR.value:
            self._history, self._not_before = ChildHistory(), 0.0  # an operator asked: start afresh
        path = "warm" if self._sandbox is not None else "cold"
        self._ensure_sandbox()
        resumed = self._transition(SessionStatus.ACTIVE, f"{path} resume")
        # The one place a resume is counted: /metrics here, /health through the pool.
        self._deps.metrics.resumes.labels(path).inc()
        self._deps.pool.count_resume(path)
        if path == "cold":
            self._deps.metrics.resumes_cold.labels(self._cold_source).inc()
        return resumed

    def stop_session(self) -> SessionRow:
        """ACTIVE|STARTING -> STOPPED: snapshot, destroy the sandbox, keep the workspace."""
        self._idle_or_conflict("stopped")
        check_session_transition(SessionStatus(self._load().status), SessionStatus.STOPPED)
        self._snapshot()
        self._release_sandbox()
        return self._transition(SessionStatus.STOPPED, "stopped by request")

    def end_session(self) -> SessionRow:
        """Any -> ENDED (idempotent): the sandbox is destroyed; the session is final."""
        row = self._load()
        if row.status == SessionStatus.ENDED.value:
            self._release_sandbox()
            self._discard_folder()
            return row
        self._snapshot()
        self._release_sandbox()
        ended = self._transition(SessionStatus.ENDED, "ended by request")
        self._discard_folder()  # final: its files stay readable from the snapshot
        return ended

    def evict(self, sandbox_id: str, reason: str) -> None:
        """Told by the pool (idle sweep, capacity): persist, free the sandbox, pause."""
        if self._sandbox is None or self._sandbox.sandbox_id != sandbox_id or self._busy:
            return
        if self._draft:  # an unclaimed pre-warm: nothing to keep (on_stop removes it)
            self.actor_ref.stop(block=False)
            return
        self._snapshot()
        self._release_sandbox()
        if self._load().status == SessionStatus.ACTIVE.value:
            self._transition(SessionStatus.PAUSED, reason)

    def configure(self, patch: dict[str, object]) -> SessionRow:
        """Patch-merge session options for later turns. A live agent process is replaced
        (the conversation resumes) so tool and prompt changes take effect. Raises BadRequest."""
        self._idle_or_conflict("reconfigured")
        row = self._load()
        merged = {**SessionOptions.from_json(row.config).to_request(), **patch}
        options = SessionOptions.from_request(merged)
        self._release_sandbox()
        self._row = self._deps.store.update_session(
            self._tenant, self._id, config=options.to_json(), model=options.model, touch=True) or row
        log.info("session %s: configuration changed (%s)", self._id, ", ".join(sorted(patch)) or "nothing")
        return self._row

    def fork(self, child_id: str) -> SessionRow:
        """A new PAUSED session with this one's files and conversation (parentSessionId)."""
        row = self._load()
        if self._sandbox is not None and not self._busy:
            self._snapshot()
        store = self._deps.store
        child = store.create_session(
            tenant_id=self._tenant, session_id=child_id, agent_name=row.agent_name,
            status=SessionStatus.PAUSED.value, sandbox_id=child_id, model=row.model,
            config=row.config, parent_session_id=self._id,
        )
        store.copy_messages(self._tenant, self._id, child_id)
        copied = self._deps.snapshots.copy(self._id, child_id, self._tenant)
        log.info("session %s forked from %s (files %s)", child_id, self._id, "copied" if copied else "fresh")
        return child

    # -- turns -------------------------------------------------------------

    def begin_turn(self) -> TurnGrant:
        """Claim the session for one turn. Raises BadRequest unless active, Conflict if busy."""
        row = self._load()
        if row.status != SessionStatus.ACTIVE.value:
            raise BadRequest(f"Session is {row.status}")
        if self._busy:
            raise Conflict("A turn is already running in this session; wait for its done event")
        started = self._ensure_sandbox()
        self._busy = True
        self._deps.pool.mark(started.sandbox_id, SandboxState.RUNNING)
        return TurnGrant(self._tenant, self._id, started.sandbox_id, started.socket_path, started.pid)

    def exec_target(self) -> TurnGrant:
        """Where an ``exec`` runs: the live sandbox of an active session (the session is not
        marked busy; an exec may run beside a turn). Raises Conflict otherwise."""
        row = self._load()
        if row.status == SessionStatus.ENDED.value:
            raise Conflict("Session has ended; commands can no longer run in it")
        if row.status != SessionStatus.ACTIVE.value:
            raise Conflict(f"Session is {row.status}; resume it first")
        if self._sandbox is None:
            raise Conflict("Session has no running sandbox (its agent process exited); "
                           "send a message or resume it to start one")
        started = self._sandbox
        return TurnGrant(self._tenant, self._id, started.sandbox_id, started.socket_path, started.pid)

    def end_turn(self) -> None:
        """Release the turn at once; bookkeeping and the snapshot follow after this reply."""
        self._busy = False
        if self._sandbox is not None:
            self._deps.pool.mark(self._sandbox.sandbox_id, SandboxState.WAITING)
        self.actor_ref.proxy().after_turn()

    def after_turn(self) -> None:
        """Runs after end_turn's reply (a message to itself): last activity, then snapshot."""
        self._row = self._deps.store.update_session(self._tenant, self._id, touch=True) or self._row
        if not self._busy:
            self._snapshot()

    def kill_agent(self, reason: str) -> None:
        """Kill this session's agent process at once (SIGKILL, no grace), even mid-turn.

        For a turn that is wedged or must end now (the turn watchdog; a stop during a turn):
        the running turn then sees its agent gone and ends with ``error`` + ``done``; the next
        turn starts a new agent process that resumes the conversation. Blocks until cleaned up.
        """
        if self._sandbox is None:
            return
        log.warning("session %s: killing its agent process: %s", self._id, reason)
        self._release_sandbox(grace_s=0.0)

    def sandbox_lost(self, fact: BridgeExited) -> None:
        """Told by the pool: the agent process died. Judge it; the next turn starts a new one."""
        if self._sandbox is None or fact.sandbox_id != self._sandbox.sandbox_id:
            return
        self._sandbox = self._sandbox_actor = None
        if self._draft:
            self.actor_ref.stop(block=False)
            return
        self._deps.metrics.agent_crashes.inc()
        detail = fact.reason or f"exit code {fact.returncode}"
        self._history = self._history.record_exit(self._deps.restarts.now(), True, detail)
        decision = self._deps.restarts.decide(self._history)
        log.warning("session %s lost its agent process (%s): %s", self._id, detail, _describe(decision))
        if isinstance(decision, Restart):
            self._not_before = self._deps.restarts.now() + decision.delay_s
        elif isinstance(decision, GiveUp | Escalate) and self._load().status == SessionStatus.ACTIVE.value:
            self._transition(SessionStatus.ERROR, decision.reason)

    # -- internals ---------------------------------------------------------

    def _idle_or_conflict(self, to: str) -> None:
        if self._busy:
            raise Conflict(f"A turn is running; interrupt it or wait for done before the session can be {to}")

    def _load(self) -> SessionRow:
        if self._row is None:
            self._row = self._deps.store.get_session(self._tenant, self._id)
        if self._row is None:
            raise NotFound(f"Session {self._id} not found")
        return self._row

    def _transition(self, to: SessionStatus, reason: str) -> SessionRow:
        row = self._load()
        current = SessionStatus(row.status)
        check_session_transition(current, to)
        keep_reason = to in (SessionStatus.ERROR, SessionStatus.PAUSED)
        updated = self._deps.store.update_session(
            self._tenant, self._id, status=to.value, status_reason=reason if keep_reason else None, touch=True)
        if updated is None:
            raise NotFound(f"Session {self._id} not found")
        self._row = updated
        log.info("session %s: %s -> %s (%s)", self._id, current.value, to.value, reason)
        return updated

    def _ensure_sandbox(self) -> SandboxStarted:
        """A running agent process, started under the restart policy. Raises SandboxFailed
        (session -> error) when the policy gives up, Unavailable when ashd's budget is spent."""
        while self._sandbox is None:
            wait = self._not_before - self._deps.restarts.now()
            if wait > 0:
                time.sleep(wait)  # backoff: blocks this session only
            try:
                self._start_once()
            except SandboxFailed as exc:
                self._deps.starts.failed(self._tenant, self._id, exc.message)
                self._history = self._history.record_exit(self._deps.restarts.now(), True, exc.message)
                decision = self._deps.restarts.decide(self._history)
                log.warning("session %s: agent process failed to start: %s", self._id, _describe(decision))
                if isinstance(decision, Restart):
                    self._not_before = self._deps.restarts.now() + decision.delay_s
                    continue
                reason = decision.reason if isinstance(decision, GiveUp | Escalate) else exc.message
                if self._load().status != SessionStatus.ERROR.value:
                    self._transition(SessionStatus.ERROR, reason)
                if isinstance(decision, Escalate):
                    raise Unavailable(f"ashd is pausing agent process restarts: {reason}", 30) from exc
                raise SandboxFailed(reason) from exc
        return self._sandbox

    def _start_once(self) -> None:
        row = self._load()
        agent = self._deps.store.get_agent(self._tenant, row.agent_name)
        if agent is None:
            raise NotFound(f"Agent {row.agent_name} of this session no longer exists")
        self._prepare_files(row)
        spec = self._spec(row, agent)
        me = self.actor_ref.proxy()
        sandbox = self._deps.pool.reserve(spec, me).get(timeout=ASK_TIMEOUT_S)
        try:
            started: SandboxStarted = sandbox.start_bridge().get(timeout=self._deps.ready_timeout_s + ASK_TIMEOUT_S)
        except (SandboxFailed, pykka.Timeout) as exc:
            self._deps.pool.release(spec.sandbox_id)
            raise exc if isinstance(exc, SandboxFailed) else SandboxFailed("agent process start timed out") from exc
        self._history = self._history.record_start(self._deps.restarts.now())
        self._deps.starts.started()
        self._deps.metrics.sandbox_start.observe(started.start_ms / 1000)
        self._deps.pool.mark(spec.sandbox_id, SandboxState.WARM)
        self._sandbox, self._sandbox_actor = started, sandbox

    def _prepare_files(self, row: SessionRow) -> None:
        """Files for a session with no workspace on this machine yet: its latest snapshot, else
        (in ``_spec``) a fresh copy of the agent. The conversation is restored by the launcher
        whenever the CLI has no transcript (ashd/sandbox/resume.py). Blocking."""
        root = self._root(row)
        ws = root / "workspace"
        self._cold_source = "local"
        if ws.exists():
            return
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            restored = self._deps.snapshots.restore(self._id, self._tenant, ws)
        except SnapshotError as exc:
            log.error("session %s: snapshot not restored (%s); starting from the agent folder", self._id, exc)
            restored = False
        self._cold_source = "cloud" if restored else "fresh"
        if restored:
            log.info("session %s: workspace restored from its snapshot", self._id)

    def _root(self, row: SessionRow) -> Path:
        return self._deps.layout.sandbox_dir(row.sandbox_id or self._id)

    def _cli_cwd(self, root: Path) -> str:
        # The CLI's working directory as it will see it (decides its transcript's project key).
        return self._deps.cli_workspace or str(root / "workspace")

    def _snapshot(self) -> None:
        if self._draft or self._sandbox is None:
            return
        ws = self._deps.layout.sandbox_dir(self._sandbox.sandbox_id) / "workspace"
        if not ws.is_dir():
            return
        digest = workspace_digest(ws)
        if digest is not None and self._saved == (self._sandbox.sandbox_id, digest):
            return  # nothing changed since the snapshot this sandbox last saved
        judged = (self._sandbox.sandbox_id, digest) if digest is not None else None
        try:
            info = self._deps.snapshots.save(self._id, self._tenant, ws)
            log.debug("session %s: snapshot %s (%d files, %d bytes, %.0f ms)", self._id, info.key, info.files,
                      info.bytes, info.ms)
            self._saved = judged
        except SnapshotSkipped as exc:
            # Files too large would be skipped again (told once, not every turn); a full disk may
            # have room by the next turn, so that is tried again.
            self._saved = judged if isinstance(exc, SnapshotTooLarge) else None
            self._snapshot_skipped(exc)
        except (SnapshotError, OSError) as exc:
            self._saved = None
            log.error("session %s: workspace snapshot failed: %s", self._id, exc)

    def _snapshot_skipped(self, skip: SnapshotSkipped) -> None:
        """A snapshot not taken is an event the user sees and a metric, never silence."""
        log.warning("session %s: workspace snapshot skipped (%s): %s", self._id, skip.reason, skip.message)
        self._deps.metrics.snapshot_skipped.labels(skip.reason).inc()
        payload = {"type": "snapshot_skipped", "reason": skip.reason, "message": skip.message,
                   "limitBytes": skip.limit_bytes}
        try:
            self._deps.store.append_event(self._tenant, self._id, "lifecycle", json.dumps(payload))
        except StoreError as exc:
            log.error("session %s: snapshot_skipped event not stored: %s", self._id, exc)

    def _release_sandbox(self, grace_s: float | None = None) -> None:
        """Stop the bridge and wait for it here (this session's thread, not the pool's)."""
        if self._sandbox is None or self._sandbox_actor is None:
            return
        try:
            self._sandbox_actor.stop_bridge(grace_s).get(timeout=self._deps.stop_timeout_s)
        except pykka.ActorDeadError:
            pass  # already stopped by the pool after a crash
        self._deps.pool.release(self._sandbox.sandbox_id).get(timeout=ASK_TIMEOUT_S)
        self._sandbox = self._sandbox_actor = None

    def _spec(self, row: SessionRow, agent: AgentRow) -> SandboxSpec:
        options = SessionOptions.from_json(row.config)
        sandbox_id = row.sandbox_id or self._id
        root = self._root(row)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            workspace.prepare(Path(agent.path), root / "workspace")
        except (OSError, AshError) as exc:
            raise SandboxFailed(f"cannot copy agent folder {agent.path}: {exc}") from exc
        socket_path = self._deps.layout.socket_path(sandbox_id)
        settings = BridgeSettings(
            session_id=self._id,
            socket_path=str(socket_path),
            workspace=str(root / "workspace"),
            # The deployed instructions, never the workspace's CLAUDE.md (the agent can edit that).
            system_prompt=options.system_prompt or agent_folder.instructions(agent.path),
            model=options.model,
            permission_mode=options.permission_mode or self._deps.sandbox.permission_mode,
            allowed_tools=options.allowed_tools,
            disallowed_tools=options.disallowed_tools,
            mcp_servers=options.mcp_servers,
            betas=options.betas,
            subagents=options.subagents,
            initial_agent=options.initial_agent,
        )
        model = self._deps.model
        env = sandbox_env(
            home=str(root / "home"),
            model_base_url=model.base_url,
            model_key=model.api_key.reveal(),
            model_auth_token=model.auth_token.reveal(),
            user_env={**agent.env, **options.extra_env},
        )
        policy = limits.policy_for(self._deps.sandbox, Path(agent.path), row.config)
        # The session's own upstream key goes to the model proxy only, never into ``env``.
        upstream = (CredentialVault(self._deps.store, self._deps.credential_key)
                    .open_for_session(self._tenant, options.credential_id) if options.credential_id else None)
        restore = resume.TranscriptRestore(self._deps.store, self._tenant, self._id, row.parent_session_id,
                                           self._cli_cwd(root))
        return SandboxSpec(sandbox_id, self._id, agent.name, self._tenant, root, socket_path, env, settings,
                           agent_dir=Path(agent.path), policy=policy, upstream_key=upstream,
                           restore_transcript=restore)


def _describe(decision: object) -> str:
    if isinstance(decision, Restart):
        return f"restarting in {decision.delay_s:.1f}s (attempt {decision.attempt}/{decision.of})"
    if isinstance(decision, GiveUp | Escalate):
        return f"giving up: {decision.reason}"
    return "not restarting"

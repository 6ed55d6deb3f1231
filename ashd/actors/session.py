"""SessionActor: one live session — its state machine, its sandbox, one turn at a time.

Runs on its own pykka thread; every method is called through a proxy and may block that
thread (store writes, a sandbox start) but never the IOLoop. Status changes happen only in
:meth:`_transition`, which validates against ``states.py``, persists and logs together.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import pykka

from ashd.actors.messages import BridgeExited, SandboxStarted, TurnGrant
from ashd.actors.pool import PoolActor
from ashd.actors.sandbox import SandboxActor
from ashd.bridge.settings import BridgeSettings
from ashd.config import ModelConfig, SandboxConfig
from ashd.errors import BadRequest, Conflict, NotFound, SandboxFailed
from ashd.layout import Layout
from ashd.options import SessionOptions
from ashd.sandbox import workspace
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launcher import SandboxSpec
from ashd.states import SandboxState, SessionStatus, check_session_transition
from ashd.store import AgentRow, SessionRow, Store

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


class SessionActor(pykka.ThreadingActor):
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps) -> None:
        super().__init__()
        self._id = session_id
        self._tenant = tenant_id
        self._deps = deps
        self._row: SessionRow | None = None
        self._sandbox: SandboxStarted | None = None
        self._sandbox_actor: pykka.ActorProxy[SandboxActor] | None = None
        self._busy = False

    # -- lifecycle ---------------------------------------------------------

    def create(self, agent: AgentRow, options: SessionOptions) -> SessionRow:
        """Insert the session, start its sandbox, and make it active.

        Raises Unavailable at capacity and SandboxFailed if the agent process cannot start;
        the session is then left in ``error`` with the reason logged.
        """
        self._row = self._deps.store.create_session(
            tenant_id=self._tenant, session_id=self._id, agent_name=agent.name,
            status=SessionStatus.STARTING.value, sandbox_id=self._id,
            model=options.model, config=options.to_json(),
        )
        try:
            self._ensure_sandbox()
        except Exception as exc:
            self._transition(SessionStatus.ERROR, f"sandbox failed to start: {exc}")
            raise
        return self._transition(SessionStatus.ACTIVE, "sandbox ready")

    def stop_session(self) -> SessionRow:
        """ACTIVE|STARTING -> STOPPED: the sandbox is destroyed, the workspace kept."""
        row = self._load()
        check_session_transition(SessionStatus(row.status), SessionStatus.STOPPED)
        self._release_sandbox()
        return self._transition(SessionStatus.STOPPED, "stopped by request")

    def end_session(self) -> SessionRow:
        """Any -> ENDED (idempotent): the sandbox is destroyed; the session is final."""
        row = self._load()
        self._release_sandbox()
        if row.status == SessionStatus.ENDED.value:
            return row
        return self._transition(SessionStatus.ENDED, "ended by request")

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
        return TurnGrant(self._id, started.sandbox_id, started.socket_path, started.pid)

    def end_turn(self) -> None:
        self._busy = False
        if self._sandbox is not None:
            self._deps.pool.mark(self._sandbox.sandbox_id, SandboxState.WAITING)
        self._row = self._deps.store.update_session(self._tenant, self._id, touch=True) or self._row

    def sandbox_lost(self, fact: BridgeExited) -> None:
        """Told by the pool: the bridge died. The next turn starts a new sandbox."""
        if self._sandbox is not None and fact.sandbox_id == self._sandbox.sandbox_id:
            log.warning("session %s lost its sandbox (exit code %s); the next message starts a new one",
                        self._id, fact.returncode)
            self._sandbox = self._sandbox_actor = None

    # -- internals ---------------------------------------------------------

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
        updated = self._deps.store.update_session(self._tenant, self._id, status=to.value, touch=True)
        if updated is None:
            raise NotFound(f"Session {self._id} not found")
        self._row = updated
        log.info("session %s: %s -> %s (%s)", self._id, current.value, to.value, reason)
        return updated

    def _ensure_sandbox(self) -> SandboxStarted:
        if self._sandbox is not None:
            return self._sandbox
        spec = self._spec()
        me = self.actor_ref.proxy()
        sandbox = self._deps.pool.reserve(spec, lambda fact: me.sandbox_lost(fact)).get(timeout=ASK_TIMEOUT_S)
        try:
            started: SandboxStarted = sandbox.start_bridge().get(timeout=self._deps.ready_timeout_s + ASK_TIMEOUT_S)
        except (SandboxFailed, pykka.Timeout):
            self._deps.pool.release(spec.sandbox_id)
            raise
        self._deps.pool.mark(spec.sandbox_id, SandboxState.WARM)
        self._sandbox, self._sandbox_actor = started, sandbox
        return started

    def _release_sandbox(self) -> None:
        """Stop the bridge and wait for it here (this session's thread, not the pool's)."""
        if self._sandbox is None or self._sandbox_actor is None:
            return
        try:
            self._sandbox_actor.stop_bridge().get(timeout=self._deps.stop_timeout_s)
        except pykka.ActorDeadError:
            pass  # already stopped by the pool after a crash
        self._deps.pool.release(self._sandbox.sandbox_id).get(timeout=ASK_TIMEOUT_S)
        self._sandbox = self._sandbox_actor = None

    def _spec(self) -> SandboxSpec:
        row = self._load()
        agent = self._deps.store.get_agent(self._tenant, row.agent_name)
        if agent is None:
            raise NotFound(f"Agent {row.agent_name} of this session no longer exists")
        options = SessionOptions.from_json(row.config)
        sandbox_id = row.sandbox_id or self._id
        root = self._deps.layout.sandbox_dir(sandbox_id)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            workspace.prepare(Path(agent.path), root / "workspace")
        except OSError as exc:
            raise SandboxFailed(f"cannot copy agent folder {agent.path}: {exc}") from exc
        socket_path = self._deps.layout.socket_path(sandbox_id)
        settings = BridgeSettings(
            session_id=self._id,
            socket_path=str(socket_path),
            workspace=str(root / "workspace"),
            system_prompt=options.system_prompt or workspace.system_prompt(root / "workspace"),
            model=options.model,
            permission_mode=options.permission_mode or self._deps.sandbox.permission_mode,
            allowed_tools=options.allowed_tools,
            disallowed_tools=options.disallowed_tools,
        )
        model = self._deps.model
        env = sandbox_env(
            home=str(root / "home"),
            model_base_url=model.base_url,
            model_key=model.api_key.reveal(),
            model_auth_token=model.auth_token.reveal(),
            user_env={**agent.env, **options.extra_env},
        )
        return SandboxSpec(sandbox_id, self._id, agent.name, self._tenant, root, socket_path, env, settings)


def new_session_id() -> str:
    return str(uuid.uuid4())

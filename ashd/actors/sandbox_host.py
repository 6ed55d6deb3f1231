"""The runner's side of remote sandboxes: serves a coordinator's link (runner mode).

For each ``launch`` it builds a spec of its own from the :class:`LaunchOrder` (its paths, its
agent cache, its model endpoint and key; ``ashd/sandbox/launch_order.py``), copies the agent
into a fresh workspace and starts the bridge with its own launcher in a
:class:`~ashd.actors.sandbox.SandboxActor`, the same actor standalone uses: spawn, ready
handshake, stderr pump, exit watch, TERM-grace-KILL. It reports up over the link: the pid in
the launch's reply, each stderr line and the exit (with the launcher's reason, e.g. OOM) as
events. ``open`` connects a link channel to a sandbox's bridge socket and relays it. ``files.*``
serve the files API of a hosted sandbox's workspace to any linked coordinator
(``ashd/sandbox/workspace_server.py``).
What the runner's sandbox services meter or notice for a linked sandbox (model usage, OOM
kills, egress decisions) goes up its link too, as ``usage`` and ``notice`` events tagged with
the sandbox id (:meth:`SandboxHost.divert`), never into the runner's own database: the
coordinator records them in its own (ashd/sandbox/remote.py).

A sandbox belongs to the link that launched it: when that link closes the host stops it
(the coordinator has already ended its turns and counts it lost). That is the fencing: a
runner cut off from its coordinator keeps nothing running that a new link could be confused
with, and a coordinator that reconnects starts from a clean slate.

Link handlers run on the IOLoop; every blocking step (copies, spawn, stop) runs on a worker
thread or the sandbox actor's own thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pykka

from ashd.actors.messages import BridgeExited
from ashd.actors.sandbox import SandboxActor
from ashd.config import ModelConfig
from ashd.errors import AshError, SandboxFailed, SnapshotError
from ashd.layout import Layout
from ashd.runnerlink.mux import Handler, Json, Mux, RequestFailed
from ashd.runnerlink.relay import open_unix, relay
from ashd.sandbox import workspace
from ashd.sandbox.agent_cache import AgentCache
from ashd.sandbox.launch_order import LaunchOrder, RunnerPlaces, check_key, spec_of
from ashd.sandbox.launcher import Launcher, SandboxSpec
from ashd.sandbox.logring import LogBook, LogLine, LogRing
from ashd.sandbox.workspace_server import OPS as FILE_OPS
from ashd.sandbox.workspace_server import WorkspaceServer
from ashd.snapshot.snapshots import Snapshotter

log = logging.getLogger(__name__)

ASK_MARGIN_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class HostConfig:
    layout: Layout
    launcher: Launcher
    model: ModelConfig
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 5.0
    cli_workspace: str | None = None  # the launcher's view of the workspace (its transcript key)
    snapshots: Snapshotter | None = None  # the runner's own snapshot settings (the shared blob store)


@dataclass
class _Hosted:
    spec: SandboxSpec
    ref: pykka.ActorRef[SandboxActor]
    link: Mux
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class _ForwardingRing(LogRing):
    """A log ring that also sends each stderr line up the link."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        super().__init__()
        self._forward = forward

    def add(self, level: str, text: str) -> LogLine:
        line = super().add(level, text)
        if level == "stderr":
            self._forward(line.text)
        return line


class _OneRing(LogBook):
    def __init__(self, ring: LogRing) -> None:
        super().__init__(keep=1)
        self._one = ring

    def ring(self, session_id: str) -> LogRing:
        return self._one


class SandboxHost:
    def __init__(self, config: HostConfig, loop: asyncio.AbstractEventLoop) -> None:
        self._config = config
        self._loop = loop
        self._agents = AgentCache(config.layout.data_dir / "agent-cache")
        self._hosted: dict[str, _Hosted] = {}  # sandbox id -> (loop thread only)
        self._uplinks: dict[str, tuple[str, Mux]] = {}  # session id -> (sandbox id, link); any thread
        self._uplinks_lock = threading.Lock()
        self._stopping: set[asyncio.Future[Json]] = set()
        self._files = WorkspaceServer(loop, self._root_of, config.layout.data_dir / "tmp")

    @property
    def count(self) -> int:
        return len(self._hosted)

    def serve(self, mux: Mux) -> Handler:
        async def handle(mux: Mux, body: Json) -> Json | None:
            op = body["op"]
            if op == "launch":
                return await self._launch(mux, LaunchOrder.from_json(body.get("order") or {}))
            if op == "agent":
                return await self._put_agent(body)
            if op == "stop":
                return await self._stop(self._find(body), float(body.get("grace_s", self._config.stop_grace_s)))
            if op == "open":
                return await self._open(mux, self._find(body), body.get("ch"))
            if op == "snapshot":
                return await self._snapshot(self._find(body))
            if op in FILE_OPS:
                return await self._files.handle(mux, body)
            raise RequestFailed(f"runner does not serve {op!r}")

        return handle

    def link_lost(self, mux: Mux) -> None:
        """A link closed: stop every sandbox it launched (fencing; see the module doc)."""
        self._files.link_lost(mux)
        for hosted in [h for h in self._hosted.values() if h.link is mux]:
            log.warning("sandbox %s of session %s: its coordinator's link closed; stopping it",
                        hosted.spec.sandbox_id, hosted.spec.session_id)
            stopping = asyncio.ensure_future(self._stop(hosted, 0.0))
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)

    def start(self) -> None:
        """As a loop service (ashd/listener.py): nothing to start; links arrive by themselves."""

    async def stop(self) -> None:
        await self.stop_all()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self._stop(h, self._config.stop_grace_s) for h in list(self._hosted.values())))
        self._files.close_all()

    def _root_of(self, sandbox_id: str) -> Path | None:
        """The sandbox dir of a sandbox hosted here (whichever link launched it), else None."""
        return self._config.layout.sandbox_dir(sandbox_id) if sandbox_id in self._hosted else None

    # -- requests -------------------------------------------------------------------------

    async def _launch(self, mux: Mux, order: LaunchOrder) -> Json:
        agent_dir = self._agents.path(order.agent_key)
        if agent_dir is None:
            return {"missing_agent": True}
        if order.sandbox_id in self._hosted:
            raise SandboxFailed(f"sandbox {order.sandbox_id} is already running on this runner")
        spec = await self._loop.run_in_executor(None, self._prepare, order, agent_dir)
        ref = SandboxActor.start(spec, self._config.launcher, lambda fact: self._exited(fact),
                                   self._config.ready_timeout_s, self._config.stop_grace_s,
                                   logs=_OneRing(_ForwardingRing(self._forwarder(mux, order.sandbox_id))))
        self._hosted[order.sandbox_id] = _Hosted(spec, ref, mux)
        with self._uplinks_lock:
            self._uplinks[spec.session_id] = (spec.sandbox_id, mux)
        try:
            started = await self._ask(ref.proxy().start_bridge(), self._config.ready_timeout_s)
        except BaseException:
            self._forget(order.sandbox_id)
            ref.stop(block=False)
            raise
        if mux.closed:  # the link went while we started: nobody owns this sandbox
            self.link_lost(mux)
        log.info("sandbox %s of session %s started for %s (pid %d)", spec.sandbox_id, spec.session_id,
                 mux.name, started.pid)
        return {"pid": started.pid, "start_ms": started.start_ms}

    def _prepare(self, order: LaunchOrder, agent_dir: Path) -> SandboxSpec:
        """Blocking (worker thread): the runner's spec, with the agent copied in if the
        workspace is new."""
        layout = self._config.layout
        root = layout.sandbox_dir(order.sandbox_id)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._restore(order, root / "workspace")
        try:
            workspace.prepare(agent_dir, root / "workspace")
        except (OSError, AshError) as exc:
            raise SandboxFailed(f"cannot copy agent {order.agent_key} into the workspace: {exc}") from exc
        model = self._config.model
        places = RunnerPlaces(root, layout.socket_path(order.sandbox_id), agent_dir, model.base_url,
                              model.api_key.reveal(), model.auth_token.reveal(), self._config.cli_workspace)
        return spec_of(order, places)

    async def _snapshot(self, hosted: _Hosted) -> Json:
        snapshots = self._config.snapshots
        if snapshots is None:
            raise RequestFailed("this runner has no snapshot store configured")
        spec = hosted.spec
        info = await self._loop.run_in_executor(None, snapshots.save, spec.session_id, spec.tenant_id, spec.workspace)
        return dataclasses.asdict(info)

    def _restore(self, order: LaunchOrder, target: Path) -> None:
        """A workspace new to this runner: the session's latest snapshot, if it has one
        (otherwise the agent folder is copied in). Blocking."""
        snapshots = self._config.snapshots
        if snapshots is None or target.exists():
            return
        try:
            if snapshots.restore(order.session_id, order.tenant_id, target):
                log.info("session %s: workspace restored from its snapshot", order.session_id)
        except (SnapshotError, OSError, ValueError) as exc:
            log.error("session %s: snapshot not restored (%s); starting from the agent folder", order.session_id, exc)

    async def _put_agent(self, body: Json) -> Json:
        key = check_key(body.get("key"), "agent version")
        try:
            archive = base64.b64decode(str(body.get("archive", "")), validate=True)
        except (binascii.Error, ValueError):
            raise SandboxFailed("agent archive is not base64") from None
        await self._loop.run_in_executor(None, self._agents.put, key, archive)
        return {}

    async def _stop(self, hosted: _Hosted, grace_s: float) -> Json:
        code = await self._ask(hosted.ref.proxy().stop_bridge(grace_s), grace_s)
        hosted.ref.stop(block=False)
        self._forget(hosted.spec.sandbox_id)
        return {"code": code}

    async def _open(self, mux: Mux, hosted: _Hosted, cid: object) -> Json:
        if hosted.link is not mux or not isinstance(cid, int):
            raise RequestFailed("no such sandbox on this link")
        channel = mux.adopt_channel(cid)
        try:
            reader, writer = await open_unix(str(hosted.spec.socket_path))
        except OSError as exc:
            channel.close()
            raise RequestFailed(f"bridge socket of sandbox {hosted.spec.sandbox_id} refused: {exc}") from None
        task = asyncio.ensure_future(relay(reader, writer, channel))
        hosted.tasks.add(task)
        task.add_done_callback(hosted.tasks.discard)
        return {}

    async def _ask(self, future: pykka.Future[T], timeout_s: float) -> T:
        """Wait for an actor's answer on a worker thread (never on the loop)."""
        return await self._loop.run_in_executor(None, functools.partial(future.get, timeout=timeout_s + ASK_MARGIN_S))

    def _find(self, body: Json) -> _Hosted:
        hosted = self._hosted.get(str(body.get("sandbox")))
        if hosted is None:
            raise RequestFailed(f"no sandbox {body.get('sandbox')!r} on this runner")
        return hosted

    def _forget(self, sandbox_id: str) -> _Hosted | None:
        hosted = self._hosted.pop(sandbox_id, None)
        if hosted is not None:
            with self._uplinks_lock:
                if self._uplinks.get(hosted.spec.session_id, ("", None))[0] == sandbox_id:
                    del self._uplinks[hosted.spec.session_id]
        return hosted

    # -- facts from sandbox threads -------------------------------------------------------

    def divert(self, session_id: str, kind: str, body: Json) -> bool:
        """The sandbox services' usage or notice (``kind``) for a session: if its sandbox is a
        linked one, send it up that link (tagged with the sandbox id) and answer True; the
        runner's own sessions answer False (recorded locally). Any thread."""
        with self._uplinks_lock:
            sandbox_id, mux = self._uplinks.get(session_id, ("", None))
        if mux is None:
            return False
        self._loop.call_soon_threadsafe(lambda: mux.event_soon(kind, sandbox=sandbox_id, body=body))
        return True

    def _forwarder(self, mux: Mux, sandbox_id: str) -> Callable[[str], None]:
        def forward(text: str) -> None:
            self._loop.call_soon_threadsafe(lambda: mux.event_soon("stderr", sandbox=sandbox_id, line=text))
        return forward

    def _exited(self, fact: BridgeExited) -> None:
        """The watcher thread saw the bridge exit: tell the owning link, forget the sandbox."""
        def report() -> None:
            hosted = self._forget(fact.sandbox_id)
            if hosted is None:
                return
            hosted.ref.stop(block=False)
            if not hosted.link.closed:
                hosted.link.event_soon("exit", sandbox=fact.sandbox_id, code=fact.returncode,
                                       expected=fact.expected, reason=fact.reason)
        self._loop.call_soon_threadsafe(report)

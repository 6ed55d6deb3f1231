"""The runner's side of remote sandboxes: serves a coordinator's link (runner mode).

For each ``launch`` it builds a spec of its own from the :class:`LaunchOrder` (its paths, its
agent cache, its model endpoint and key; ``ashd/sandbox/launch_order.py``), prepares its folder
(``ashd/sandbox/runner_folders.py``: the session's snapshot restored or the agent copied into a
fresh workspace) and starts the bridge with its own launcher in a
:class:`~ashd.actors.sandbox.SandboxActor`, the same actor standalone uses: spawn, ready
handshake, stderr pump, exit watch, TERM-grace-KILL. It reports up over the link: the pid in
the launch's reply, each stderr line and the exit (with the launcher's reason, e.g. OOM) as
events. ``open`` connects a link channel to a sandbox's bridge socket and relays it.
``agent`` requests carry an agent folder's archive in bounded chunks (ashd/sandbox/agent_cache.py);
``snapshot`` saves a sandbox's workspace into the shared blob store unless it is unchanged
since that sandbox's last save (the standalone fingerprint; the reply says ``unchanged``).
``files.*`` serve the files API of a hosted sandbox's workspace to any linked coordinator
(``ashd/sandbox/workspace_server.py``).
What the runner's sandbox services meter or notice for a linked sandbox (model usage, OOM
kills, egress decisions) goes up its link too, as ``usage`` and ``notice`` events tagged with
the sandbox id (:meth:`SandboxHost.divert`), never into the runner's own database: the
coordinator records them in its own (ashd/sandbox/remote.py).

A launch is admitted first (ashd/sandbox/linked_admission.py): a runner holds at most its
advertised capacity of linked sandboxes, and makes a new workspace image only if its data disk
can give all of its quota; the files its files API writes (a spooled upload, a bundled
download) are admitted by the same disk rule. A refusal answers the coordinator with the status
(503 or 507), the message and the retry hint its client gets. ``discard`` removes the folder of
a sandbox whose session ended (the coordinator sends it); a folder of a session that may resume
stays, so a resume here mounts the same image.

A sandbox belongs to the link that launched it: when that link closes the host stops it
(the coordinator has already ended its turns and counts it lost). That is the fencing: a
runner cut off from its coordinator keeps nothing running that a new link could be confused
with, and a coordinator that reconnects starts from a clean slate. A partition may leave a
link half-open for long, so the runner's membership also fences by time
(:meth:`SandboxHost.fence`): once no coordinator has taken a heartbeat sent within the
liveness timeout, every linked sandbox stops and launches are refused until one does.

Only the owning link may stop, open, snapshot or release a sandbox.

*Handover between coordinators* (docs/architecture.md, "Session ownership across
coordinators"): a launch carries the coordinator's session lease generation (``lease``). The
owner of an idle session gives its sandbox up with ``release``: the sandbox stays alive,
owned by nobody, for :data:`RELEASE_GRACE_S`, then stops. A launch for that sandbox with a
newer generation and the same configuration adopts it: the new link owns the same bridge and
CLI (warm, no start). A launch whose generation is not newer than the sandbox's is refused
(the fencing of a coordinator that lost its lease); one for a sandbox still owned by another
link (that coordinator lost its lease) or with another configuration stops the old sandbox
and starts afresh.

Link handlers run on the IOLoop; every blocking step (copies, spawn, stop) runs on a worker
thread or the sandbox actor's own thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pykka

from ashd.actors.hosted import ForwardingRing, HostConfig, Hosted, OneRing, fingerprint, lease_of, refused
from ashd.actors.messages import BridgeExited
from ashd.actors.sandbox import SandboxActor
from ashd.errors import SandboxFailed, Unavailable
from ashd.runnerlink.mux import Handler, Json, Mux, RequestFailed
from ashd.runnerlink.relay import open_unix, relay
from ashd.sandbox.agent_cache import AgentCache
from ashd.sandbox.agent_uploads import AgentUploads
from ashd.sandbox.launch_order import LaunchOrder, check_key
from ashd.sandbox.launcher import SandboxSpec
from ashd.sandbox.runner_folders import RunnerFolders
from ashd.sandbox.workspace_server import OPS as FILE_OPS
from ashd.sandbox.workspace_server import WorkspaceServer, any_room

log = logging.getLogger(__name__)

ASK_MARGIN_S = 30.0
RELEASE_GRACE_S = 30.0  # a released sandbox waits this long for a coordinator to adopt it
T = TypeVar("T")


class SandboxHost:
    def __init__(self, config: HostConfig, loop: asyncio.AbstractEventLoop) -> None:
        self._config = config
        self._loop = loop
        self._hosted: dict[str, Hosted] = {}  # sandbox id -> (loop thread only)
        self._uplinks: dict[str, tuple[str, Mux | None]] = {}  # session id -> (sandbox id, owner link); any thread
        self._uplinks_lock = threading.Lock()
        self._stopping: set[asyncio.Future[Json]] = set()
        self._launching: set[str] = set()  # sandbox ids admitted, not started yet (loop thread)
        self._fenced: str | None = None  # why launches are refused (cut off from the coordinators)
        room = config.admission.transfer_room if config.admission else any_room
        self._agents = AgentUploads(AgentCache(config.layout.data_dir / "agent-cache"), loop, room)
        self._files = WorkspaceServer(loop, self._root_of, config.layout.data_dir / "tmp", room)
        self._folders = RunnerFolders(config.layout, config.launcher, config.model, config.cli_workspace,
                                      config.snapshots, config.digest, config.stop_grace_s)

    @property
    def count(self) -> int:
        return len(self._hosted)

    def serve(self, mux: Mux) -> Handler:
        async def handle(mux: Mux, body: Json) -> Json | None:
            op = body["op"]
            if op == "launch":
                return await self._launch(mux, LaunchOrder.from_json(body.get("order") or {}), lease_of(body))
            if op == "agent":
                return await self._agents.put(mux, body)
            if op == "stop":
                return await self._stop(self._owned(mux, body), float(body.get("grace_s", self._config.stop_grace_s)))
            if op == "open":
                return await self._open(mux, self._owned(mux, body), body.get("ch"))
            if op == "snapshot":
                return await self._snapshot(self._owned(mux, body))
            if op == "release":
                return self._release(self._owned(mux, body))
            if op == "discard":
                return await self._discard(body.get("sandbox"))
            if op in FILE_OPS:
                return await self._files.handle(mux, body)
            raise RequestFailed(f"runner does not serve {op!r}")

        return handle

    def link_lost(self, mux: Mux) -> None:
        """A link closed: stop every sandbox it owns (fencing; see the module doc; released
        sandboxes are nobody's: their grace runs on) and drop its unfinished agent uploads."""
        self._agents.link_lost(mux)
        self._files.link_lost(mux)
        for hosted in [h for h in self._hosted.values() if h.link is mux]:
            log.warning("sandbox %s of session %s: its coordinator's link closed; stopping it",
                        hosted.spec.sandbox_id, hosted.spec.session_id)
            self._stop_soon(hosted)

    def fence(self, why: str) -> None:
        """Cut off from every coordinator for the liveness timeout: stop every linked sandbox
        at once (its session may be resuming elsewhere) and refuse launches until
        :meth:`restore`. Loop thread."""
        self._fenced = why
        for hosted in list(self._hosted.values()):
            log.warning("sandbox %s of session %s: this runner is fenced; stopping it", hosted.spec.sandbox_id,
                        hosted.spec.session_id)
            self._stop_soon(hosted)

    def restore(self) -> None:
        """A coordinator takes this runner's heartbeats again: launches are accepted."""
        self._fenced = None

    def _stop_soon(self, hosted: Hosted) -> None:
        stopping = self._stop(hosted, 0.0)
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

    async def _launch(self, mux: Mux, order: LaunchOrder, lease: int | None) -> Json:
        if self._fenced is not None:
            raise SandboxFailed(f"runner is fenced, not starting sandbox {order.sandbox_id}: {self._fenced}")
        agent_dir = self._agents.hold(order.agent_key)  # until the launch is over (then the sandbox's own)
        if agent_dir is None:
            return {"missing_agent": True}
        try:
            return await self._launch_held(mux, order, lease, agent_dir)
        finally:
            self._agents.release(order.agent_key)

    async def _launch_held(self, mux: Mux, order: LaunchOrder, lease: int | None, agent_dir: Path) -> Json:
        if order.sandbox_id in self._launching:
            raise SandboxFailed(f"sandbox {order.sandbox_id} is already starting on this runner")
        existing = self._hosted.get(order.sandbox_id)
        if existing is not None:
            adopted = await self._take_over(mux, existing, order, lease)
            if adopted is not None:
                return adopted
        if order.sandbox_id in self._launching or order.sandbox_id in self._hosted:
            raise SandboxFailed(f"sandbox {order.sandbox_id} was started on this runner meanwhile")
        admission = self._config.admission
        if admission is not None and len(self._hosted) + len(self._launching) >= admission.capacity:
            return refused(admission.full())
        self._launching.add(order.sandbox_id)
        try:
            return await self._start(mux, order, agent_dir, lease)
        except Unavailable as exc:  # no disk for its image: the coordinator's client is told
            return refused(exc)
        finally:  # its image is made (or never will be): no longer a promise
            self._launching.discard(order.sandbox_id)
            if admission is not None:
                admission.launched(order.sandbox_id)

    async def _start(self, mux: Mux, order: LaunchOrder, agent_dir: Path, lease: int | None) -> Json:
        spec = await self._loop.run_in_executor(None, self._admit_and_prepare, order, agent_dir)
        refs: list[pykka.ActorRef[SandboxActor]] = []  # this launch's actor, for its exit report
        ref = SandboxActor.start(spec, self._config.launcher, lambda fact: self._exited(fact, refs),
                                   self._config.ready_timeout_s, self._config.stop_grace_s,
                                   logs=OneRing(ForwardingRing(self._forwarder(order.sandbox_id))))
        refs.append(ref)
        hosted = Hosted(spec, ref, mux, generation=lease, fingerprint=fingerprint(order))
        self._hosted[order.sandbox_id] = hosted
        self._agents.hold(order.agent_key)  # its restarts copy from it too; released by _forget
        self._set_uplink(spec, mux)
        try:
            started = await self._ask(ref.proxy().start_bridge(), self._config.ready_timeout_s)
        except BaseException:
            self._forget(order.sandbox_id)
            ref.stop(block=False)
            raise
        hosted.pid = started.pid
        if mux.closed:  # the link went while we started: nobody owns this sandbox
            self.link_lost(mux)
        elif self._fenced is not None and self._hosted.get(order.sandbox_id) is hosted:
            self._stop_soon(hosted)  # fenced while it started: it must not run
        log.info("sandbox %s of session %s started for %s (pid %d, lease %s)", spec.sandbox_id, spec.session_id,
                 mux.name, started.pid, lease)
        return {"pid": started.pid, "start_ms": started.start_ms}

    def _admit_and_prepare(self, order: LaunchOrder, agent_dir: Path) -> SandboxSpec:
        """Blocking (worker thread): admit the launch's workspace image on the data disk, then
        prepare the launch. Raises InsufficientStorage when the image does not fit."""
        if self._config.admission is not None:
            self._config.admission.admit_launch(order)
        return self._folders.prepare(order, agent_dir)

    async def _take_over(self, mux: Mux, hosted: Hosted, order: LaunchOrder, lease: int | None) -> Json | None:
        """A launch for a sandbox this runner already hosts: adopt it (its reply), or stop it
        so a new one starts (None). Raises SandboxFailed for a stale or foreign order."""
        spec = hosted.spec
        if (spec.session_id, spec.tenant_id) != (order.session_id, order.tenant_id):
            raise SandboxFailed(f"sandbox {order.sandbox_id} on this runner belongs to another session")
        if lease is None or (hosted.generation is not None and hosted.generation >= lease):
            # A coordinator without a newer lease than the owner's: fenced.
            raise SandboxFailed(f"sandbox {order.sandbox_id} is already running on this runner under lease "
                                f"{hosted.generation}; a launch with lease {lease} is not newer: refused")
        if hosted.link is None and hosted.stopping is None and hosted.fingerprint == fingerprint(order):
            return self._adopt(mux, hosted, lease)
        old = hosted.link
        why = "its configuration changed" if hosted.link is None else "its owner lost the session's lease"
        log.warning("sandbox %s of session %s: a launch under lease %d replaces it (%s); stopping it first",
                    spec.sandbox_id, spec.session_id, lease, why)
        if old is not None and not old.closed and old is not mux:
            old.event_soon("exit", sandbox=spec.sandbox_id, code=-9, expected=False,
                           reason=f"another coordinator took the session over (lease {lease})")
        await self._stop(hosted, 0.0)
        return None

    def _adopt(self, mux: Mux, hosted: Hosted, lease: int) -> Json:
        """Hand a released sandbox to ``mux``'s coordinator: the same bridge, warm."""
        if hosted.grace is not None:
            hosted.grace.cancel()
            hosted.grace = None
        hosted.link, hosted.generation = mux, lease
        self._set_uplink(hosted.spec, mux)
        log.info("sandbox %s of session %s adopted by %s (pid %d, lease %d)", hosted.spec.sandbox_id,
                 hosted.spec.session_id, mux.name, hosted.pid, lease)
        return {"pid": hosted.pid, "start_ms": 0.0, "adopted": True}

    def _release(self, hosted: Hosted) -> Json:
        """The owner gives the sandbox up (its session is idle and another coordinator wants
        it): its relays end, the bridge lives on, owned by nobody, for the grace period."""
        for task in list(hosted.tasks):
            task.cancel()
        hosted.link = None
        self._set_uplink(hosted.spec, None)
        sandbox_id = hosted.spec.sandbox_id
        hosted.grace = self._loop.call_later(RELEASE_GRACE_S, self._grace_over, sandbox_id, hosted)
        log.info("sandbox %s of session %s released by its coordinator; kept %.0fs for another to adopt",
                 sandbox_id, hosted.spec.session_id, RELEASE_GRACE_S)
        return {}

    def _grace_over(self, sandbox_id: str, hosted: Hosted) -> None:
        if self._hosted.get(sandbox_id) is hosted and hosted.link is None:
            log.info("sandbox %s of session %s: nobody adopted it within %.0fs; stopping it", sandbox_id,
                     hosted.spec.session_id, RELEASE_GRACE_S)
            self._stop_soon(hosted)

    def _set_uplink(self, spec: SandboxSpec, mux: Mux | None) -> None:
        with self._uplinks_lock:
            self._uplinks[spec.session_id] = (spec.sandbox_id, mux)

    async def _snapshot(self, hosted: Hosted) -> Json:
        if self._folders.snapshots is None:
            raise RequestFailed("this runner has no snapshot store configured")
        last, hosted.saved = hosted.saved, None  # a save that fails leaves "save next time"
        answer, hosted.saved = await self._loop.run_in_executor(None, self._folders.save, hosted.spec, last)
        return answer

    async def _discard(self, raw: object) -> Json:
        """Remove the folder of a sandbox that is not running here (its session ended)."""
        sandbox_id = check_key(raw, "sandbox id")
        if sandbox_id in self._hosted or sandbox_id in self._launching:
            raise RequestFailed(f"sandbox {sandbox_id} is running on this runner; stop it first")
        removed = await self._loop.run_in_executor(None, self._folders.remove, sandbox_id)
        return {"removed": removed}

    def _stop(self, hosted: Hosted, grace_s: float) -> asyncio.Future[Json]:
        """Stop the sandbox (once: a second caller waits for the first stop)."""
        if hosted.stopping is None:
            if hosted.grace is not None:
                hosted.grace.cancel()
            hosted.stopping = asyncio.ensure_future(self._stopped(hosted, grace_s))
        return hosted.stopping

    async def _stopped(self, hosted: Hosted, grace_s: float) -> Json:
        try:
            code = await self._ask(hosted.ref.proxy().stop_bridge(grace_s), grace_s)
        finally:
            hosted.ref.stop(block=False)
            self._forget(hosted.spec.sandbox_id, hosted)
        return {"code": code}

    async def _open(self, mux: Mux, hosted: Hosted, cid: object) -> Json:
        if not isinstance(cid, int):
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

    def _owned(self, mux: Mux, body: Json) -> Hosted:
        """The sandbox the request names, if ``mux`` owns it (another link's is not there for it)."""
        hosted = self._hosted.get(str(body.get("sandbox")))
        if hosted is None or hosted.link is not mux:
            raise RequestFailed(f"no sandbox {body.get('sandbox')!r} owned by this link on this runner")
        return hosted

    def _forget(self, sandbox_id: str, only: Hosted | None = None) -> Hosted | None:
        """Drop the sandbox (``only``: if it is still that one, not a successor)."""
        hosted = self._hosted.get(sandbox_id)
        if hosted is None or (only is not None and hosted is not only):
            return None
        del self._hosted[sandbox_id]
        self._agents.release(hosted.spec.agent_key)
        if hosted.grace is not None:
            hosted.grace.cancel()
        with self._uplinks_lock:
            if self._uplinks.get(hosted.spec.session_id, ("", None))[0] == sandbox_id:
                del self._uplinks[hosted.spec.session_id]
        return hosted

    # -- facts from sandbox threads -------------------------------------------------------

    def divert(self, session_id: str, kind: str, body: Json) -> bool:
        """The sandbox services' usage or notice (``kind``) for a session: if its sandbox is a
        linked one, send it up its owner's link (tagged with the sandbox id) and answer True;
        the runner's own sessions answer False (recorded locally). A released sandbox's (no
        owner; it runs no turn) is dropped, logged. Any thread."""
        with self._uplinks_lock:
            if session_id not in self._uplinks:
                return False
            sandbox_id, mux = self._uplinks[session_id]
        if mux is None:
            log.warning("sandbox %s: %s while no coordinator owns it; dropped", sandbox_id, kind)
            return True
        self._loop.call_soon_threadsafe(lambda: mux.event_soon(kind, sandbox=sandbox_id, body=body))
        return True

    def _forwarder(self, sandbox_id: str) -> Callable[[str], None]:
        """Each stderr line goes up its sandbox's owner's link at the time (dropped while released)."""
        def send(text: str) -> None:
            hosted = self._hosted.get(sandbox_id)
            if hosted is not None and hosted.link is not None and not hosted.link.closed:
                hosted.link.event_soon("stderr", sandbox=sandbox_id, line=text)

        def forward(text: str) -> None:
            self._loop.call_soon_threadsafe(send, text)
        return forward

    def _exited(self, fact: BridgeExited, refs: list[pykka.ActorRef[SandboxActor]]) -> None:
        """The watcher thread saw the bridge exit: tell the owning link, forget the sandbox
        (if it is still this launch's: a successor under the same id is not touched)."""
        def report() -> None:
            current = self._hosted.get(fact.sandbox_id)
            if current is None or not refs or current.ref is not refs[0]:
                return
            hosted = self._forget(fact.sandbox_id, current)
            if hosted is None:
                return
            hosted.ref.stop(block=False)
            if hosted.link is not None and not hosted.link.closed:
                hosted.link.event_soon("exit", sandbox=fact.sandbox_id, code=fact.returncode,
                                       expected=fact.expected, reason=fact.reason)
        self._loop.call_soon_threadsafe(report)

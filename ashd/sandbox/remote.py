"""Sandboxes on a runner, behind the :class:`~ashd.sandbox.launcher.Launcher` seam (coordinator).

The cut: the session runtime, the pool and the sandbox actors are the ones standalone uses;
only the launcher differs. :meth:`RemoteLauncher.spawn` sends the runner a
:class:`~ashd.sandbox.launch_order.LaunchOrder` over the link (the agent folder first, once
per version, if the runner lacks it) and returns a
:class:`~ashd.sandbox.remote_process.RemoteProcess`: a handle with the
surface of a ``Popen`` whose stdout pipe gets the ready byte when the runner reports the
bridge ready, whose stderr pipe carries the bridge's stderr lines as the runner forwards
them, and whose ``wait`` returns when the runner reports the exit (or the link drops: the
sandbox is then lost, exit code -9). At ``spec.socket_path`` the launcher listens on a unix
socket; each connection a session's :class:`~ashd.wire.link.BridgeLink` makes there opens a
link channel to the runner, which connects it to the real bridge socket, and the frames are
relayed both ways unchanged (ashd/runnerlink/relay.py).

What the runner's model proxy meters and its sandbox services notice (OOM kills, egress
decisions) for a sandbox arrives as ``usage`` and ``notice`` events tagged with the sandbox
id; the launcher records them through a :class:`~ashd.sandbox.services.Recorder`, as the
standalone services do (usage rows, session events, metrics, the running turn's notice). A
runner's figure is trusted for its own sandboxes only: the tenant, session and agent come from
the coordinator's own spec of a sandbox this launcher started over that same link; an event
for any other sandbox id is ignored (logged).

Session leases (coordinators on a shared Postgres, ``ashd/store/leases.py``): a spawn holds the
session's lease (taken here if the runtime has not taken it already; refused with a Conflict
when another coordinator holds it) and sends its generation with the launch, so the runner
refuses an older owner and hands a sandbox that another coordinator released to this one warm
(``adopted``). The lease is given up when the sandbox is cleaned up here (stopped, lost,
parked) or handed over (``RemoteProcess.detach``: ``release`` on the runner, which keeps
the sandbox for the next owner).

``spawn``/``stop_group``/``detach`` run on the sandbox actor's thread and wait for the loop;
the relay and the link live on the IOLoop (``loop``).

A ``RemoteProcess``'s ``pid`` is not the runner's: it is a number unique in this
coordinator process (above any Linux pid), because the coordinator keys what it knows of a
process by it (the :class:`~ashd.actors.exits.ExitBoard`, turn grants) and runners' pids
collide: across machines, across a runner's restarts (containers start from the same pids),
and for one session whose sandbox moved to another runner under the same sandbox id. The
runner's own pid is ``runner_pid`` (in the logs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import logging
import os
import uuid
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ashd.errors import Conflict, PayloadTooLarge, SandboxFailed, SnapshotError
from ashd.runnerlink.mux import Handler, Json, LinkClosed, MessageTooLarge, Mux, RequestFailed
from ashd.runnerlink.relay import relay
from ashd.sandbox import agent_cache
from ashd.sandbox.launch_order import order_of
from ashd.sandbox.launcher import SandboxSpec
from ashd.sandbox.placement import Placement
from ashd.sandbox.recorder import Recorder
from ashd.sandbox.remote_process import LOST_CODE, STOP_MARGIN_S, RemoteProcess
from ashd.sandbox.runner_reports import NOTICE_TYPES, refusal_of, usage_of
from ashd.snapshot.snapshots import SnapshotInfo, Snapshotter
from ashd.store import StoreError
from ashd.store.leases import SessionLeases

log = logging.getLogger(__name__)

LAUNCH_TIMEOUT_S = 120.0  # the order (and the agent folder) reach the runner and it spawned
LOST_REASON = "the runner hosting this sandbox was lost (its link closed)"
RELEASE_TIMEOUT_S = 15.0
SNAPSHOT_TIMEOUT_S = 300.0
HANDLE_BASE = 1 << 32  # remote process numbers start above any pid (Linux's pid_max is at most 2**22)
_handles = itertools.count(HANDLE_BASE)  # next() is atomic under the GIL
T = TypeVar("T")


class RemoteSnapshots(Snapshotter):
    """The coordinator's snapshotter when workspaces live on runners: a save asks the runner
    hosting the session's sandbox to archive its workspace into the shared blob store (with
    the runner's own snapshot settings); a restore is the runner's too (at its next launch),
    so here it restores nothing. Copies (forks) and deletes act on the blob store directly."""

    def __init__(self, base: Snapshotter, save_remote: Callable[[str], SnapshotInfo]) -> None:
        super().__init__(base.blob_store, base.tmp_dir, max_bytes=base.max_bytes, floor=base.floor)
        self._save_remote = save_remote

    def save(self, session_id: str, tenant_id: str, workspace: Path) -> SnapshotInfo:
        return self._save_remote(session_id)

    def restore(self, session_id: str, tenant_id: str, target: Path) -> bool:
        return False


class RemoteLauncher:
    """Launches each spec on a runner (chosen by :class:`Placement`), through its link."""

    name = "remote"

    def __init__(self, loop: asyncio.AbstractEventLoop, link_of: Callable[[str], Mux | None],
                 placement: Placement | None = None, recorder: Recorder | None = None,
                 leases: SessionLeases | None = None) -> None:
        """``link_of(runner id)``: the runner's live link, or None (loop thread; read from
        actor threads too: a dict lookup). ``placement``: None runs every spec on its
        ``runner_id`` (components without a store). ``recorder``: where the runners' usage
        and notices of their sandboxes go (None: dropped). ``leases``: the coordinators'
        session leases (None: one coordinator, on SQLite; no generations)."""
        self._loop = loop
        self._link_of = link_of
        self._placement = placement
        self._recorder = recorder
        self._leases = leases
        self._procs: dict[str, RemoteProcess] = {}  # sandbox id -> the live handle (loop thread)
        self._specs: dict[str, SandboxSpec] = {}  # sandbox id -> its spec, as launched (loop thread)
        self._hosts: dict[str, tuple[str, str]] = {}  # session id -> (runner id, sandbox id) of its live sandbox
        self._folders: dict[str, str] = {}  # sandbox id -> the runner keeping its folder (until discarded)
        self._servers: dict[str, asyncio.AbstractServer] = {}

    # -- Launcher (actor threads) ---------------------------------------------------------

    def connected(self, runner_id: str) -> bool:
        mux = self._link_of(runner_id)
        return mux is not None and not mux.closed

    def hosted_on(self, runner_ids: Collection[str]) -> list[tuple[str, str]]:
        """(sandbox id, runner id) of each live sandbox this launcher started on one of
        ``runner_ids`` (the drain's question). Any thread: it reads a copy."""
        return [(sandbox, runner) for runner, sandbox in list(self._hosts.values()) if runner in runner_ids]

    def spawn(self, spec: SandboxSpec) -> RemoteProcess:
        lease = self._lease(spec)
        try:
            last = self._placement.recorded(spec) if self._placement is not None else spec.runner_id
            runner, reserved = self._placement.place(spec) if self._placement is not None else (spec.runner_id, False)
            if runner is None:
                raise SandboxFailed(f"session {spec.session_id} has no runner to start its sandbox on")
        except BaseException:
            self._let_lease_go(spec)
            raise
        moved = last != runner  # its last sandbox ran elsewhere: what this runner kept of it is stale
        spec = dataclasses.replace(spec, runner_id=runner)
        proc = RemoteProcess(spec.sandbox_id, lambda grace: self._call(self._stop(spec, grace), grace + STOP_MARGIN_S),
                             lambda: self._call(self._release(spec), RELEASE_TIMEOUT_S + 5))
        try:
            # Blocking reads of the transcript and the spend so far, here on the actor's thread.
            spent = self._recorder.spent_before_start(spec) if self._recorder is not None else 0.0
            order = order_of(spec, spent, fresh=moved).to_json()
            self._call(self._launch(spec, order, proc, lease), LAUNCH_TIMEOUT_S)
        except BaseException:
            proc.exited(LOST_CODE, "start failed")
            proc.close_pipes()
            self.cleanup(spec)
            raise
        finally:
            if reserved and self._placement is not None:
                self._placement.release(runner)
        return proc

    def _lease(self, spec: SandboxSpec) -> int | None:
        """The generation of this coordinator's lease on the session (taken now if the runtime
        has not). Raises Conflict when another coordinator holds it, StoreUnavailable (503)
        when the lease connection is down."""
        if self._leases is None:
            return None
        held = self._leases.hold(spec.session_id)
        if held is None:
            raise Conflict("Another coordinator is serving this session right now; retry shortly")
        return held[0]

    def _let_lease_go(self, spec: SandboxSpec) -> None:
        if self._leases is not None:
            try:
                self._leases.release(spec.session_id)
            except StoreError as exc:  # the connection is down: Postgres frees the lock with it
                log.info("session %s: lease not released: %s", spec.session_id, exc)

    def runner_pid(self, sandbox_id: str) -> int | None:
        """The live sandbox's bridge pid on its runner (``SandboxStarted.pid`` is this
        coordinator's number for it), or None."""
        proc = self._procs.get(sandbox_id)
        return proc.runner_pid if proc is not None else None

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        proc = self._procs.get(spec.sandbox_id)
        return proc.reason if proc is not None else None

    def cleanup(self, spec: SandboxSpec) -> None:
        """The sandbox is gone here (stopped, lost, handed over, or its start failed): close
        its socket and give the session's lease up."""
        with contextlib.suppress(Exception):
            self._call(self._close(spec), 10.0)
        self._let_lease_go(spec)

    def discard(self, sandbox_id: str) -> None:
        """The session ended: the runner that kept its sandbox's folder removes it (best effort;
        a runner that is gone or restarted keeps it until an operator cleans up). Actor thread."""
        runner = self._folders.pop(sandbox_id, None)
        mux = self._link_of(runner) if runner else None
        if mux is None or mux.closed:
            return
        try:
            self._call(mux.request("discard", sandbox=sandbox_id), 30.0)
        except (SandboxFailed, LinkClosed, RequestFailed) as exc:
            log.warning("runner %s did not remove the folder of sandbox %s: %s", runner, sandbox_id, exc)

    # -- snapshots (the snapshot worker's threads) ---------------------------------------

    # The coordinator cannot see the workspace: it always asks, and the runner skips the upload
    # when the workspace is unchanged since that sandbox's last save (SandboxHost).
    snapshot_digest = staticmethod(lambda workspace: None)

    def snapshots_over(self, base: Snapshotter) -> RemoteSnapshots:
        return RemoteSnapshots(base, self._save_on_runner)

    def _save_on_runner(self, session_id: str) -> SnapshotInfo:
        """Raises SnapshotError when the session has no live sandbox on a linked runner."""
        runner, sandbox_id = self._hosts.get(session_id, ("", ""))
        mux = self._link_of(runner) if runner else None
        if mux is None or mux.closed:
            raise SnapshotError(f"session {session_id} has no live sandbox on a linked runner to snapshot")
        try:
            reply = self._call(mux.request("snapshot", sandbox=sandbox_id, timeout=SNAPSHOT_TIMEOUT_S),
                               SNAPSHOT_TIMEOUT_S + 5)
        except (SandboxFailed, LinkClosed, RequestFailed) as exc:
            raise SnapshotError(f"runner {runner} did not snapshot session {session_id}: {exc}") from exc
        if reply.get("unchanged"):
            return SnapshotInfo(str(reply.get("key", "")), 0, 0, float(reply.get("ms", 0)), unchanged=True)
        return SnapshotInfo(str(reply["key"]), int(reply["bytes"]), int(reply["files"]), float(reply["ms"]),
                            int(reply.get("content_bytes", 0)))

    def _call(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise SandboxFailed("the runner did not answer in time") from None

    # -- the link side (loop thread) ------------------------------------------------------

    def serve(self, mux: Mux) -> Handler:
        """The handler for a runner link's events: stderr/exit/usage/notice of its sandboxes."""
        async def handle(mux: Mux, body: Json) -> Json | None:
            if body["op"] in ("usage", "notice"):
                self._record(mux, body)
                return None
            proc = self._procs.get(str(body.get("sandbox")))
            if proc is None:
                return None
            if body["op"] == "stderr":
                proc.line(str(body.get("line", "")))
            elif body["op"] == "exit":
                code = body.get("code")
                proc.exited(code if isinstance(code, int) else LOST_CODE, body.get("reason") or None)
            return None

        return handle

    def _record(self, mux: Mux, body: Json) -> None:
        """A runner's usage or notice: recorded as the session's when the sandbox is one this
        launcher started over this same link, else ignored."""
        sandbox_id = str(body.get("sandbox"))
        spec = self._specs.get(sandbox_id)
        if spec is None or self._link_of(spec.runner_id or "") is not mux:
            log.warning("link %s: %s for sandbox %r ignored: not one this coordinator launched on that runner",
                        mux.name, body["op"], sandbox_id[:80])
            return
        if self._recorder is None:
            return
        fact = body.get("body")
        if body["op"] == "usage":
            usage = usage_of(fact)
            if usage is None:
                log.warning("link %s: malformed usage for sandbox %s ignored", mux.name, sandbox_id)
                return
            self._recorder.usage(spec.tenant_id, spec.session_id, spec.agent_name, usage)
        elif isinstance(fact, dict) and fact.get("type") in NOTICE_TYPES:
            self._recorder.notice(spec.tenant_id, spec.session_id, fact)
        else:
            log.warning("link %s: unknown notice for sandbox %s ignored", mux.name, sandbox_id)

    async def _launch(self, spec: SandboxSpec, order: Json, proc: RemoteProcess, lease: int | None) -> None:
        runner = spec.runner_id or ""
        mux = self._link_of(runner)
        if mux is None or mux.closed:
            raise SandboxFailed(f"runner {runner} is not connected; cannot start the session's sandbox there")
        await self._listen(spec, mux)
        self._procs[spec.sandbox_id] = proc
        self._specs[spec.sandbox_id] = spec
        self._folders[spec.sandbox_id] = runner
        self._hosts[spec.session_id] = (runner, spec.sandbox_id)
        mux.on_close(lambda: proc.exited(LOST_CODE, LOST_REASON))
        try:
            reply = await mux.request("launch", order=order, lease=lease, timeout=LAUNCH_TIMEOUT_S)
            if reply.get("missing_agent"):
                await self._ship_agent(mux, spec)
                reply = await mux.request("launch", order=order, lease=lease, timeout=LAUNCH_TIMEOUT_S)
        except MessageTooLarge as exc:  # never fits: no retry
            proc.exited(LOST_CODE, str(exc))
            raise PayloadTooLarge(f"the session's launch order (its conversation) cannot reach runner {runner}: "
                                  f"{exc}") from exc
        except (LinkClosed, RequestFailed) as exc:
            proc.exited(LOST_CODE, str(exc))
            raise SandboxFailed(f"runner {runner} could not start the sandbox: {exc}") from exc
        if "refused" in reply:
            proc.exited(LOST_CODE, "refused by the runner")
            raise refusal_of(runner, reply["refused"])
        proc.runner_pid, proc.pid = int(reply.get("pid", 0)), next(_handles)
        proc.adopted = bool(reply.get("adopted"))
        log.info("sandbox %s of session %s %s runner %s as pid %d there (process %d here, lease %s)",
                 spec.sandbox_id, spec.session_id, "adopted live on" if proc.adopted else "runs on", runner,
                 proc.runner_pid, proc.pid, lease)
        proc.ready()

    async def _ship_agent(self, mux: Mux, spec: SandboxSpec) -> None:
        if spec.agent_dir is None:
            raise SandboxFailed(f"agent {spec.agent_name} has no folder to ship to the runner")
        archive = await asyncio.get_running_loop().run_in_executor(None, agent_cache.pack, spec.agent_dir)
        upload = uuid.uuid4().hex  # chunks of at most agent_cache.CHUNK_BYTES (the runner assembles them)
        for offset in range(0, len(archive), agent_cache.CHUNK_BYTES):
            chunk = base64.b64encode(archive[offset:offset + agent_cache.CHUNK_BYTES]).decode()
            await mux.request("agent", key=spec.agent_key, upload=upload, offset=offset, total=len(archive),
                              data=chunk, timeout=LAUNCH_TIMEOUT_S)
        log.info("agent %s (%s) shipped to runner %s: %d bytes", spec.agent_name, spec.agent_key,
                 spec.runner_id, len(archive))

    async def _listen(self, spec: SandboxSpec, mux: Mux) -> None:
        """The local end of the sandbox's bridge socket: each connection relayed to the runner."""
        await self._close(spec)
        spec.socket_path.parent.mkdir(parents=True, exist_ok=True)
        spec.socket_path.unlink(missing_ok=True)

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            channel = mux.new_channel()
            try:
                await mux.request("open", ch=channel.id, sandbox=spec.sandbox_id)
            except (LinkClosed, RequestFailed) as exc:
                log.info("sandbox %s: bridge socket not reachable on runner %s: %s", spec.sandbox_id,
                         spec.runner_id, exc)
                channel.close()
                writer.close()
                return
            await relay(reader, writer, channel)

        server = await asyncio.start_unix_server(connected, str(spec.socket_path))
        os.chmod(spec.socket_path, 0o600)
        self._servers[spec.sandbox_id] = server

    async def _stop(self, spec: SandboxSpec, grace_s: float) -> None:
        mux = self._link_of(spec.runner_id or "")
        if mux is None or mux.closed:
            return  # the link's close already ended the sandbox's handle
        try:
            reply = await mux.request("stop", sandbox=spec.sandbox_id, grace_s=grace_s, timeout=grace_s + STOP_MARGIN_S)
        except (LinkClosed, RequestFailed):
            return
        proc, code = self._procs.get(spec.sandbox_id), reply.get("code")
        if proc is not None and isinstance(code, int):
            proc.exited(code, None)  # the exit event may trail the reply

    async def _release(self, spec: SandboxSpec) -> None:
        """Give the sandbox up on its runner, alive (a handover). Raises SandboxFailed."""
        mux = self._link_of(spec.runner_id or "")
        if mux is None or mux.closed:
            raise SandboxFailed(f"runner {spec.runner_id} is not connected; the sandbox cannot be handed over")
        try:
            await mux.request("release", sandbox=spec.sandbox_id, timeout=RELEASE_TIMEOUT_S)
        except (LinkClosed, RequestFailed, TimeoutError) as exc:
            raise SandboxFailed(f"runner {spec.runner_id} did not release sandbox {spec.sandbox_id}: {exc}") from exc

    async def _close(self, spec: SandboxSpec) -> None:
        self._procs.pop(spec.sandbox_id, None)
        self._specs.pop(spec.sandbox_id, None)
        if self._hosts.get(spec.session_id, ("", ""))[1] == spec.sandbox_id:
            del self._hosts[spec.session_id]
        server = self._servers.pop(spec.sandbox_id, None)
        if server is not None:
            server.close()
            spec.socket_path.unlink(missing_ok=True)

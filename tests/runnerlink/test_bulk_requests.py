"""The runner link's bulk requests, over a real WebSocket on loopback between a runner's
SandboxHost and a coordinator's RemoteLauncher: agent folders travel in bounded chunks and are
refused, on both sides, past the documented bound (never a hang, never one huge message); a
snapshot the coordinator asks for is skipped on the runner when the workspace is unchanged
since that sandbox's last save (the fingerprint standalone uses), and taken when it changed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from ashd.actors.hosted import Hosted
from ashd.actors.sandbox_host import HostConfig, SandboxHost
from ashd.config import ModelConfig, Secret
from ashd.errors import PayloadTooLarge
from ashd.layout import Layout
from ashd.runnerlink.endpoint import RunnerEnd
from ashd.runnerlink.mux import MAX_MESSAGE_BYTES, Handler, MessageTooLarge, Mux, RequestFailed
from ashd.sandbox import agent_cache
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec
from ashd.sandbox.remote import RemoteLauncher
from ashd.sandbox.remote_process import RemoteProcess
from ashd.snapshot.fingerprint import workspace_digest
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import LocalBlobStore
from tests.runnerlink.loopback import SECRET, client, listen
from tests.runnerlink.test_remote_sandbox import coordinator_spec

MiB = 1024 * 1024


def settled_digest(root: Path) -> str | None:
    """The standalone fingerprint, judged as if two seconds had passed (files written just
    now are not "racy"), so the test need not wait out the kernel's timestamp granularity."""
    return workspace_digest(root, time.time_ns() + 2_000_000_000)


class Link:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.layout = Layout(tmp_path / "runner")
        self.layout.create()
        self.blobs = LocalBlobStore(tmp_path / "blobs")
        self.snapshots = Snapshotter(self.blobs, tmp_path / "snap-tmp")
        self.sizes: list[int] = []  # every link message the coordinator sent, in bytes
        self.runner_muxes: list[Mux] = []  # the runner's end of each link it served

    async def __aenter__(self) -> Link:
        loop = asyncio.get_running_loop()
        self.host = SandboxHost(HostConfig(self.layout, DirectLauncher(), ModelConfig("http://model.invalid",
                                                                                      Secret("k")),
                                           snapshots=self.snapshots, digest=settled_digest), loop)
        def serve(mux: Mux) -> Handler:
            self.runner_muxes.append(mux)
            return self.host.serve(mux)

        self.server, port = listen(RunnerEnd(SECRET, "r1", serve, on_lost=self.host.link_lost))
        box: list[RemoteLauncher] = []
        self.link = client(port, lambda mux: box[0].serve(mux))
        self.launcher = RemoteLauncher(loop, lambda runner: self.link.mux if runner == "r1" else None)
        box.append(self.launcher)
        self.link.start()
        await self.link.wait_up(30)
        assert self.link.mux is not None
        sent = self.link.mux._send

        async def measured(message: bytes) -> None:
            self.sizes.append(len(message))
            await sent(message)

        self.link.mux._send = measured
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.stop()
        self.server.stop()
        await self.host.stop_all()

    @property
    def mux(self) -> Mux:
        assert self.link.mux is not None
        return self.link.mux

    def cached(self, key: str) -> Path:
        return self.layout.data_dir / "agent-cache" / key


def agent_of(tmp_path: Path, name: str, random_bytes: int) -> SandboxSpec:
    spec = coordinator_spec(tmp_path, "http://model.invalid")
    folder = tmp_path / name
    folder.mkdir()
    (folder / "CLAUDE.md").write_text("You are big.")
    (folder / "data.bin").write_bytes(os.urandom(random_bytes))  # incompressible: packs to about its size
    return dataclasses.replace(spec, agent_dir=folder, agent_key=f"{name}.1")


def test_an_agent_folder_ships_in_bounded_chunks_and_a_too_large_one_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Link(tmp_path) as link:
            medium = agent_of(tmp_path, "medium", 9 * MiB)
            await link.launcher._ship_agent(link.mux, medium)
            shipped = (link.cached("medium.1") / "data.bin").read_bytes()
            assert shipped == (tmp_path / "medium" / "data.bin").read_bytes()
            assert len(link.sizes) == 3  # 9 MiB in chunks of 4 MiB
            assert max(link.sizes) < agent_cache.CHUNK_BYTES * 4 // 3 + 4096
            assert not link.host._agents.arriving
            assert not list((link.layout.data_dir / "agent-cache").glob(".incoming-*"))

            # Too large: refused before anything is sent, with why (413 for a session create).
            big = agent_of(tmp_path, "big", agent_cache.MAX_ARCHIVE_BYTES + MiB)
            link.sizes.clear()
            with pytest.raises(PayloadTooLarge, match="over the 32 MiB an agent shipped to runners may take"):
                await asyncio.wait_for(link.launcher._ship_agent(link.mux, big), 120)
            assert link.sizes == [] and not link.cached("big.1").exists()

            # The runner holds the same bound: an upload announcing more is refused at its first chunk.
            with pytest.raises(RequestFailed, match="agent archive of 33554433 bytes refused"):
                await link.mux.request("agent", key="big.1", upload=uuid.uuid4().hex, offset=0,
                                       total=agent_cache.MAX_ARCHIVE_BYTES + 1, data="")
            # A chunk out of order ends its upload (nothing half-written is kept).
            upload = uuid.uuid4().hex
            await link.mux.request("agent", key="odd.1", upload=upload, offset=0, total=10, data="AAAA")
            with pytest.raises(RequestFailed, match="does not follow"):
                await link.mux.request("agent", key="odd.1", upload=upload, offset=5, total=10, data="AAAA")
            assert not link.host._agents.arriving
            assert not list((link.layout.data_dir / "agent-cache").glob(".incoming-*"))
            with pytest.raises(RequestFailed, match="upload id"):
                await link.mux.request("agent", key="odd.1", upload="../x", offset=0, total=10, data="AAAA")

    asyncio.run(scenario())


def test_a_runner_skips_the_snapshot_of_an_unchanged_workspace(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Link(tmp_path) as link:
            spec = coordinator_spec(tmp_path, "http://model.invalid")
            runner_spec = dataclasses.replace(spec, root=link.layout.sandbox_dir(spec.sandbox_id))
            runner_spec.workspace.mkdir(parents=True)
            (runner_spec.workspace / "notes.txt").write_text("first\n")
            # A sandbox the runner hosts for this link (its actor is not needed to snapshot).
            link.host._hosted[spec.sandbox_id] = Hosted(runner_spec, cast(Any, None), link.runner_muxes[-1])
            link.launcher._hosts[spec.session_id] = ("r1", spec.sandbox_id)
            saver = link.launcher.snapshots_over(link.snapshots)
            loop = asyncio.get_running_loop()

            async def save() -> Any:
                return await loop.run_in_executor(None, saver.save, spec.session_id, "t", Path("/unused"))

            stored = tmp_path / "blobs" / "t" / spec.session_id / "workspace.tar.gz"
            first = await save()
            assert not first.unchanged and first.files >= 1 and stored.exists()
            stamp = stored.stat().st_mtime_ns
            again = await save()
            assert again.unchanged and again.key == first.key  # nothing uploaded
            assert stored.stat().st_mtime_ns == stamp

            (runner_spec.workspace / "notes.txt").write_text("second\n")
            changed = await save()
            assert not changed.unchanged and stored.stat().st_mtime_ns != stamp
            restored = tmp_path / "restored"
            assert link.snapshots.restore(spec.session_id, "t", restored)
            assert (restored / "notes.txt").read_text() == "second\n"
            assert (await save()).unchanged
            del link.host._hosted[spec.sandbox_id]

    asyncio.run(scenario())


def test_a_message_over_the_links_limit_fails_its_request_and_the_link_stays_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Link(tmp_path) as link:
            with pytest.raises(MessageTooLarge, match="over the runner link's limit"):
                await link.mux.request("snapshot", sandbox="x" * MAX_MESSAGE_BYTES)
            assert link.sizes == [] and not link.mux.closed  # refused before sending: the runner never saw it
            with pytest.raises(RequestFailed, match="no sandbox 'nope' owned by this link"):  # still served
                await link.mux.request("snapshot", sandbox="nope")

            # A launch order that large (a huge conversation) fails its start for good, with why.
            spec = coordinator_spec(tmp_path, "http://model.invalid")
            proc = RemoteProcess(spec.sandbox_id, lambda grace: None)
            try:
                with pytest.raises(PayloadTooLarge, match=r"launch order .* cannot reach runner r1"):
                    await link.launcher._launch(spec, {"transcripts": "x" * MAX_MESSAGE_BYTES}, proc, None)
                assert proc.returncode is not None and not link.mux.closed and link.host.count == 0
            finally:
                await link.launcher._close(spec)
                proc.close_pipes()

    asyncio.run(scenario())

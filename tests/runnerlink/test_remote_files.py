"""The files API over a real loopback runner link: RemoteFiles (coordinator) against
WorkspaceServer (runner) on a workspace on disk, no sandbox processes.

Chunked reads and writes arrive whole; the runner's containment refuses escapes whatever the
coordinator sends, with the standalone status; transfers are bounded and owned by their link.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ashd.actors.sandbox_host import HostConfig, SandboxHost
from ashd.config import ModelConfig, Secret
from ashd.errors import BadRequest, InsufficientStorage, NotFound, Unavailable
from ashd.files.live import LiveFiles
from ashd.layout import Layout
from ashd.runnerlink.endpoint import RunnerEnd
from ashd.runnerlink.mux import Json, Mux, RequestFailed
from ashd.sandbox import workspace_server
from ashd.sandbox.admission import MIB, DiskLedger
from ashd.sandbox.launcher import DirectLauncher
from ashd.sandbox.linked_admission import LinkedAdmission
from ashd.sandbox.remote_files import RemoteFiles, remote_lookup
from ashd.sandbox.workspace_server import Room, WorkspaceServer, any_room
from ashd.store import Store
from tests.runnerlink.loopback import SECRET, client, listen

T = TypeVar("T")


def on_link(tmp_path: Path, scenario: Callable[[Mux, Callable[[str], LiveFiles | None]], Awaitable[None]],
            room: Room = any_room, servers: list[WorkspaceServer] | None = None) -> None:
    """Run ``scenario(mux, lookup)`` with a runner serving sandbox ``sb1`` (``tmp_path/sb1``);
    ``room``: the runner's disk rule; ``servers`` gets the runner's WorkspaceServer."""
    (tmp_path / "sb1" / "workspace").mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        files = WorkspaceServer(loop, lambda sid: tmp_path / sid if sid == "sb1" else None, tmp_path / "tmp", room)
        if servers is not None:
            servers.append(files)

        def serve(mux: Mux):  # type: ignore[no-untyped-def]
            async def handle(mux: Mux, body: Json) -> Json | None:
                return await files.handle(mux, body)
            return handle

        server, port = listen(RunnerEnd(SECRET, "r1", serve, on_lost=files.link_lost))
        link = client(port)
        link.start()
        try:
            mux = await link.wait_up(30)
            await scenario(mux, remote_lookup(loop, lambda runner: link.mux if runner == "r1" else None))
        finally:
            await link.stop()
            server.stop()
            files.close_all()

    asyncio.run(main())


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def test_reads_and_writes_of_several_chunks_arrive_whole(tmp_path: Path) -> None:
    ws = tmp_path / "sb1" / "workspace"

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        assert await off_loop(lookup, "r1", "nope") is None  # not hosted there
        assert await off_loop(lookup, "r2", "sb1") is None  # not linked
        files = await off_loop(lookup, "r1", "sb1")
        assert isinstance(files, RemoteFiles)
        big = os.urandom(2 * workspace_server.CHUNK_BYTES + 12345)
        (ws / "deep").mkdir()
        (ws / "deep" / "big.bin").write_bytes(big)
        (ws / ".hidden").write_text("h")
        listed = {i.path: i.size for i in await off_loop(files.list_files, True)}
        assert listed == {"deep/big.bin": len(big), ".hidden": 1}
        assert {i.path for i in await off_loop(files.list_files, False)} == {"deep/big.bin"}

        stream, size = await off_loop(files.open_file, ("deep", "big.bin"))
        got = b"".join([await off_loop(stream.read, 300_000) for _ in range(size // 300_000 + 2)])
        await off_loop(stream.close)
        assert size == len(big) and hashlib.sha256(got).digest() == hashlib.sha256(big).digest()

        upload = os.urandom(3 * 1024 * 1024 + 7)
        assert await off_loop(files.write, ("in", "up.bin"), upload) == len(upload)
        assert (ws / "in" / "up.bin").read_bytes() == upload
        await off_loop(files.delete, ("in", "up.bin"))
        assert not (ws / "in" / "up.bin").exists()

        dest = tmp_path / "bundle.tar.gz"
        await off_loop(files.write_bundle, dest, 100 << 20)
        with tarfile.open(dest) as tar:
            assert "deep/big.bin" in tar.getnames()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("restored/note.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"note"))
        archive = tmp_path / "up.tar.gz"
        archive.write_bytes(buf.getvalue())
        assert await off_loop(files.apply_bundle, archive, 100 << 20) >= 1
        assert (ws / "restored" / "note.txt").read_text() == "note"

    on_link(tmp_path, scenario)


def test_escapes_are_refused_on_the_runner_with_the_standalone_status(tmp_path: Path) -> None:
    ws = tmp_path / "sb1" / "workspace"
    (tmp_path / "outside.txt").write_text("host secret")

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        os.symlink(tmp_path / "outside.txt", ws / "link")
        os.symlink("..", ws / "up")
        files = await off_loop(lookup, "r1", "sb1")
        assert files is not None
        for parts in (("link",), ("up", "outside.txt")):
            with pytest.raises(BadRequest, match="symlink"):
                await off_loop(files.open_file, parts)
            with pytest.raises(BadRequest, match="symlink"):
                await off_loop(files.write, parts, b"x")
        assert (tmp_path / "outside.txt").read_text() == "host secret"
        with pytest.raises(NotFound):
            await off_loop(files.open_file, ("missing",))
        # Whatever a coordinator sends, the runner parses the path itself.
        for path in ("../outside.txt", "/etc/passwd", "a\\b", ""):
            with pytest.raises(RequestFailed) as refused:
                await mux.request("files.open", sandbox="sb1", path=path)
            assert refused.value.status == 400, path
        with pytest.raises(RequestFailed) as unknown:
            await mux.request("files.chunk", token="not-a-token")
        assert unknown.value.status == 404

    on_link(tmp_path, scenario)


def test_open_transfers_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "sb1" / "workspace").mkdir(parents=True)
    (tmp_path / "sb1" / "workspace" / "f").write_text("x")

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        tokens = [(await mux.request("files.open", sandbox="sb1", path="f"))["token"]
                  for _ in range(workspace_server.MAX_TRANSFERS)]
        files = await off_loop(lookup, "r1", "sb1")
        assert files is not None
        with pytest.raises(Unavailable, match="transfers open"):
            await off_loop(files.open_file, ("f",))
        await mux.request("files.close", token=tokens[0])
        stream, size = await off_loop(files.open_file, ("f",))
        assert size == 1 and await off_loop(stream.read, -1) == b"x"
        await off_loop(stream.close)

    on_link(tmp_path, scenario)


def test_an_idle_transfer_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sb1" / "workspace").mkdir(parents=True)
    (tmp_path / "sb1" / "workspace" / "f").write_text("x")

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        token = (await mux.request("files.open", sandbox="sb1", path="f"))["token"]
        assert (await mux.request("files.chunk", token=token))["eof"]
        monkeypatch.setattr(workspace_server, "IDLE_S", 0.0)  # every transfer is idle from now on
        with pytest.raises(RequestFailed) as expired:
            await mux.request("files.chunk", token=token)
        assert expired.value.status == 404 and "idle" in str(expired.value)

    on_link(tmp_path, scenario)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_what_open_transfers_hold_on_the_runners_disk_is_bounded(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace_server, "MAX_HELD_BYTES", 10)
    servers: list[WorkspaceServer] = []

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        first, second = [(await mux.request("files.spool"))["token"] for _ in range(2)]
        await mux.request("files.append", token=first, data=b64(b"123456"))
        with pytest.raises(RequestFailed) as full:
            await mux.request("files.append", token=second, data=b64(b"abcdef"))
        assert full.value.status == 507 and "retry shortly" in str(full.value)
        assert servers[0].disk.held == 6
        closing = servers[0]._transfers[first]
        await mux.request("files.close", token=first)
        assert servers[0].disk.held == 0
        with pytest.raises(NotFound):  # an append that waited for the close makes no new spool
            await off_loop(workspace_server._append, closing, b64(b"late"))
        assert servers[0].disk.held == 0 and len(list((tmp_path / "tmp").iterdir())) == 1  # the second's
        await mux.request("files.append", token=second, data=b64(b"abcdef"))
        await mux.request("files.commit", token=second, sandbox="sb1", path="got")
        assert (tmp_path / "sb1" / "workspace" / "got").read_bytes() == b"abcdef"
        assert servers[0].disk.held == 0 and not list((tmp_path / "tmp").iterdir())

    on_link(tmp_path, scenario, servers=servers)


def test_a_write_the_runners_disk_has_no_room_for_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    asked: list[int] = []

    @contextlib.contextmanager
    def room(nbytes: int):  # type: ignore[no-untyped-def]
        asked.append(nbytes)
        if nbytes > 100:
            raise InsufficientStorage("Not enough disk on the runner for this file transfer", 30)
        yield

    async def scenario(mux: Mux, lookup: Callable[[str, str], LiveFiles | None]) -> None:
        token = (await mux.request("files.spool"))["token"]
        with pytest.raises(RequestFailed) as refused:
            await mux.request("files.append", token=token, data=b64(b"x" * 1000))
        assert refused.value.status == 507 and "Not enough disk" in str(refused.value)
        await mux.request("files.append", token=token, data=b64(b"y" * 50))  # the spool is as it was
        await mux.request("files.commit", token=token, sandbox="sb1", path="small")
        assert (tmp_path / "sb1" / "workspace" / "small").read_bytes() == b"y" * 50
        with pytest.raises(RequestFailed) as bundle:
            await mux.request("files.bundle", sandbox="sb1", max_bytes=1 << 20)
        assert bundle.value.status == 507
        assert asked == [1000, 50, 1 << 20] and not list((tmp_path / "tmp").iterdir())

    on_link(tmp_path, scenario, room=room)


def test_a_runners_uploads_are_admitted_by_its_disk_rule(tmp_path: Path) -> None:
    """A runner whose data disk can promise ~16 MiB more (beside its reserve) refuses an upload's
    spool once it would eat into the reserve, and an agent's folder, with the 507 the
    coordinator's client gets. (The disk may move a little under the test: what is checked is
    that the append refused is one the headroom could not take.)"""
    layout = Layout(tmp_path / "runner")
    layout.create()
    store = Store(f"sqlite:///{tmp_path / 'runner.db'}")
    store.migrate()
    probe = DiskLedger(layout, store, reserve_mb=0, reserve_percent=0.0)
    ledger = DiskLedger(layout, store, reserve_mb=probe.figures({}, ()).free // MIB - 16, reserve_percent=0.0)

    async def scenario() -> None:
        host = SandboxHost(HostConfig(layout, DirectLauncher(), ModelConfig("http://127.0.0.1:9", Secret("k")),
                                      admission=LinkedAdmission(1, ledger, 64)), asyncio.get_running_loop())
        server, port = listen(RunnerEnd(SECRET, "r1", host.serve, on_lost=host.link_lost))
        link = client(port)
        link.start()
        try:
            mux = await link.wait_up(30)
            token = (await mux.request("files.spool"))["token"]
            chunk, sent = b64(os.urandom(MIB)), 0
            with pytest.raises(RequestFailed) as refused:
                for _ in range(64):
                    await mux.request("files.append", token=token, data=chunk)
                    sent += 1
            assert refused.value.status == 507 and "Not enough disk on the runner" in str(refused.value)
            assert sent >= 1 and ledger.figures({}, ()).headroom < 4 * MIB  # the rule, not luck, stopped it
            await mux.request("files.close", token=token)
            assert not list((layout.data_dir / "tmp").iterdir())
            # An agent's folder too: its extraction is admitted at the most an agent may unpack to.
            with pytest.raises(RequestFailed) as agent:
                await mux.request("agent", key="a.1", upload="ab" * 16, offset=0, total=10, data=b64(b"x" * 10))
            assert agent.value.status == 507 and "the agent's folder" in str(agent.value)
            assert not list((layout.data_dir / "agent-cache").iterdir())  # the upload was dropped
        finally:
            await link.stop()
            server.stop()
            await host.stop_all()

    try:
        asyncio.run(scenario())
    finally:
        store.close()

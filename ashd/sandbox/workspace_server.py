"""A runner serves the files API of its sandboxes' workspaces to the coordinators (runner mode).

The coordinator's :class:`~ashd.sandbox.remote_files.RemoteFiles` sends ``files.*`` requests
over the link; each is served here with :class:`~ashd.files.live.LocalFiles` on the
sandbox's workspace, the code standalone uses: the path is parsed and contained again here
(never trusted from the request), symlinks are refused, errors keep their status and code
(they travel in the link's reply, ``ashd/runnerlink/mux.py``).

Nothing large travels in one message. What is read (a listing, a file, a bundle) becomes a
*transfer*: an open stream the coordinator pulls in chunks of at most :data:`CHUNK_BYTES`
(``files.chunk``) and closes. What is written (an upload, a bundle to apply) goes to a
*spool*: a private file under the runner's data dir that ``files.append`` fills, bounded by
:data:`MAX_SPOOL_BYTES`, and ``files.commit`` / ``files.apply`` consume. At most
:data:`MAX_TRANSFERS` are open at once; one idle for :data:`IDLE_S` is closed, and a link's
are closed when it closes.

The runner's disk: the files that open transfers hold (spools, bundles) add up to at most
:data:`MAX_HELD_BYTES`, and every write to one is first admitted by the runner's disk rule
(``room``: the workspace images' promises and the reserve, ashd/sandbox/linked_admission.py) and
held as pending while it is written; a refusal is a 507 and leaves nothing behind.

Ops (``sandbox`` names a sandbox this runner hosts, launched through any link):
``files.live``, ``files.list {hidden}``, ``files.open {path}``, ``files.bundle {max_bytes}``,
``files.delete {path}`` on a sandbox; ``files.chunk {token}``, ``files.close {token}``;
``files.spool``, ``files.append {token, data}``, ``files.commit {token, sandbox, path}``,
``files.apply {token, sandbox, max_bytes}``.

:meth:`WorkspaceServer.handle` runs on the IOLoop; file I/O runs on the default executor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ujson

from ashd.errors import BadRequest, InsufficientStorage, NotFound, PayloadTooLarge, Unavailable
from ashd.files.contained import parse_relative
from ashd.files.live import LocalFiles, tree_at
from ashd.runnerlink.mux import Json, Mux

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # per link message: 1.4 MB of base64, far under the frame limit
MAX_TRANSFERS = 64
MAX_SPOOL_BYTES = 160 * 1024 * 1024  # the largest body the files API accepts, decoded
MAX_HELD_BYTES = 512 * 1024 * 1024  # what a runner's open transfers may hold in files at once
IDLE_S = 120.0
GONE = "no such file transfer on this runner (it ended, or sat idle too long)"
OPS = frozenset({"files.live", "files.list", "files.open", "files.bundle", "files.delete", "files.chunk",
                 "files.close", "files.spool", "files.append", "files.commit", "files.apply"})


Room = Callable[[int], AbstractContextManager[None]]


def any_room(nbytes: int) -> AbstractContextManager[None]:
    """The room of a disk without a rule (a runner that makes no workspace images)."""
    return contextlib.nullcontext()


class DiskUse:
    """The bytes open transfers hold in files on the runner's disk (any thread).
    ``room(n)``: blocking; the data disk's room for ``n`` more bytes, held while they are
    written; raises InsufficientStorage."""

    def __init__(self, room: Room = any_room) -> None:
        self._room = room
        self._lock = threading.Lock()
        self.held = 0

    @contextlib.contextmanager
    def writing(self, transfer: _Transfer, nbytes: int) -> Iterator[None]:
        """Admit ``nbytes`` more of ``transfer``'s file for the write inside the block."""
        with self._room(nbytes):
            before = transfer.held
            self._settle(transfer, before + nbytes)
            try:
                yield
            except BaseException:
                self.settle(transfer, before)
                raise

    def settle(self, transfer: _Transfer, nbytes: int) -> None:
        """``transfer``'s file holds ``nbytes`` now (its write is over, or it is gone: 0)."""
        self._settle(transfer, nbytes, check=False)

    def _settle(self, transfer: _Transfer, nbytes: int, check: bool = True) -> None:
        with self._lock:
            held = self.held - transfer.held + nbytes
            if check and held > MAX_HELD_BYTES:
                raise InsufficientStorage(f"this runner's open file transfers hold {MAX_HELD_BYTES >> 20} MB on its "
                                          "disk, its limit; retry shortly", 5)
            self.held, transfer.held = held, nbytes


@dataclass
class _Transfer:
    owner: Mux
    stream: IO[bytes] | None = None  # reading: what files.chunk pulls from
    spool: Path | None = None  # writing: what files.append fills
    size: int = 0
    used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    disk: DiskUse | None = None  # what counts the bytes its file holds on the runner's disk
    held: int = 0
    closed: bool = False

    def close(self) -> None:
        """Blocking; idempotent. Waits for a chunk or an append under way."""
        with self.lock:
            self.closed = True
            if self.stream is not None:
                with contextlib.suppress(OSError):
                    self.stream.close()
            if self.spool is not None:
                self.spool.unlink(missing_ok=True)
            if self.disk is not None:
                self.disk.settle(self, 0)


class WorkspaceServer:
    def __init__(self, loop: asyncio.AbstractEventLoop, sandbox_root: Callable[[str], Path | None],
                 tmp_dir: Path, room: Room = any_room) -> None:
        """``sandbox_root(sandbox id)``: the sandbox dir of a sandbox this runner hosts, else
        None (loop thread). ``tmp_dir``: where spools and bundles are written (created 0700).
        ``room``: the runner's disk rule for them (see :class:`DiskUse`)."""
        self._loop = loop
        self._root = sandbox_root
        self._tmp = tmp_dir
        self.disk = DiskUse(room)
        self._transfers: dict[str, _Transfer] = {}  # token -> (loop thread only)

    async def handle(self, mux: Mux, body: Json) -> Json:
        """Serve one ``files.*`` request. Raises AshError (its status reaches the coordinator)."""
        self._expire()
        op = body["op"]
        if op in ("files.chunk", "files.close", "files.append"):
            return await self._on_transfer(op, mux, body)
        if op == "files.spool":
            return await self._run(self._open_spool, mux)
        if op in ("files.commit", "files.apply"):
            transfer = self._take(mux, body)
            try:
                files = await self._files(body)
                return await self._run(self._consume, op, transfer, files, body)
            finally:
                await self._run(transfer.close)
        files = await self._files(body)
        if op == "files.live":
            return {}
        if op == "files.delete":
            await self._run(files.delete, parse_relative(body.get("path")))
            return {}
        if op == "files.list":
            return await self._run(self._list, mux, files, bool(body.get("hidden", True)))
        if op == "files.open":
            return await self._run(self._open, mux, files, parse_relative(body.get("path")))
        if op == "files.bundle":
            return await self._run(self._bundle, mux, files, _int(body, "max_bytes"))
        raise BadRequest(f"runner does not serve {op!r}")

    def link_lost(self, mux: Mux) -> None:
        """Close the link's transfers (loop thread)."""
        for token in [t for t, tr in self._transfers.items() if tr.owner is mux]:
            self._close_soon(self._transfers.pop(token))

    def close_all(self) -> None:
        for transfer in self._transfers.values():
            transfer.close()
        self._transfers.clear()

    # -- reading ----------------------------------------------------------------------------

    def _list(self, mux: Mux, files: LocalFiles, hidden: bool) -> Json:
        infos = files.list_files(hidden)
        data = ujson.dumps([[i.path, i.size, i.mtime] for i in infos], ensure_ascii=False).encode()
        return self._add(_Transfer(mux, io.BytesIO(data), size=len(data)))

    def _open(self, mux: Mux, files: LocalFiles, parts: tuple[str, ...]) -> Json:
        stream, size = files.open_file(parts)
        return self._add(_Transfer(mux, stream, size=size))  # type: ignore[arg-type]

    def _bundle(self, mux: Mux, files: LocalFiles, max_bytes: int) -> Json:
        transfer = _Transfer(mux, disk=self.disk)
        try:
            with self.disk.writing(transfer, max_bytes):
                path = self._temp(".tar.gz")
                try:
                    files.write_bundle(path, max_bytes)
                    transfer.stream = open(path, "rb")  # the transfer owns it
                finally:
                    path.unlink(missing_ok=True)  # the open stream keeps the bytes
            transfer.size = os.fstat(transfer.stream.fileno()).st_size
            self.disk.settle(transfer, transfer.size)
        except BaseException:
            transfer.close()
            raise
        return self._add(transfer)

    # -- writing ----------------------------------------------------------------------------

    def _open_spool(self, mux: Mux) -> Json:
        return self._add(_Transfer(mux, spool=self._temp(".spool"), disk=self.disk))

    def _consume(self, op: str, transfer: _Transfer, files: LocalFiles, body: Json) -> Json:
        assert transfer.spool is not None
        if op == "files.commit":
            return {"size": files.write_from(parse_relative(body.get("path")), transfer.spool, transfer.size)}
        return {"count": files.apply_bundle(transfer.spool, _int(body, "max_bytes"))}

    # -- transfers --------------------------------------------------------------------------

    async def _on_transfer(self, op: str, mux: Mux, body: Json) -> Json:
        if op == "files.close":
            token = str(body.get("token"))
            transfer = self._transfers.get(token)
            if transfer is not None and transfer.owner is mux:
                del self._transfers[token]
                await self._run(transfer.close)
            return {}
        transfer = self._get(mux, body)
        if op == "files.chunk":
            return await self._run(_chunk, transfer)
        return await self._run(_append, transfer, body.get("data"))

    def _add(self, transfer: _Transfer) -> Json:
        """Register a transfer (called on a worker thread: hands over to the loop)."""
        token = secrets.token_hex(16)
        future = asyncio.run_coroutine_threadsafe(self._register(token, transfer), self._loop)
        future.result(10)
        return {"token": token, "size": transfer.size}

    async def _register(self, token: str, transfer: _Transfer) -> None:
        if len(self._transfers) >= MAX_TRANSFERS:
            self._close_soon(transfer)
            raise Unavailable(f"this runner has {MAX_TRANSFERS} file transfers open; retry shortly", retry_after_s=1)
        self._transfers[token] = transfer

    def _get(self, mux: Mux, body: Json) -> _Transfer:
        transfer = self._transfers.get(str(body.get("token")))
        if transfer is None or transfer.owner is not mux:
            raise NotFound(GONE)
        transfer.used = time.monotonic()
        return transfer

    def _take(self, mux: Mux, body: Json) -> _Transfer:
        transfer = self._get(mux, body)
        del self._transfers[str(body.get("token"))]
        return transfer

    def _expire(self) -> None:
        old = time.monotonic() - IDLE_S
        for token in [t for t, tr in self._transfers.items() if tr.used < old]:
            log.info("file transfer %s… sat idle for %.0fs; closed", token[:8], IDLE_S)
            self._close_soon(self._transfers.pop(token))

    def _close_soon(self, transfer: _Transfer) -> None:
        self._loop.run_in_executor(None, transfer.close)

    # -- helpers ----------------------------------------------------------------------------

    async def _files(self, body: Json) -> LocalFiles:
        root = self._root(str(body.get("sandbox")))
        tree = await self._run(tree_at, root) if root is not None else None
        if tree is None:
            raise NotFound(f"sandbox {body.get('sandbox')!r} has no live workspace on this runner")
        return LocalFiles(tree)

    def _temp(self, suffix: str) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="link-files-", suffix=suffix, dir=self._tmp)
        os.close(fd)
        return Path(name)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._loop.run_in_executor(None, fn, *args)


def _chunk(transfer: _Transfer) -> Json:
    assert transfer.stream is not None
    with transfer.lock:
        if transfer.closed:
            raise NotFound(GONE)
        data = transfer.stream.read(CHUNK_BYTES)
    return {"data": base64.b64encode(data).decode(), "eof": len(data) < CHUNK_BYTES}


def _append(transfer: _Transfer, raw: object) -> Json:
    if transfer.spool is None or not isinstance(raw, str):
        raise BadRequest("files.append needs a spool token and base64 data")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("files.append data is not base64") from None
    with transfer.lock:
        if transfer.closed:  # closed while this append waited: the spool is gone, and stays gone
            raise NotFound(GONE)
        if transfer.size + len(data) > MAX_SPOOL_BYTES:
            raise PayloadTooLarge(f"an upload over the link is at most {MAX_SPOOL_BYTES >> 20} MB")
        assert transfer.disk is not None
        try:
            with transfer.disk.writing(transfer, len(data)), open(transfer.spool, "ab") as out:
                out.write(data)
        except OSError:  # a part written: the spool is what was appended before
            with contextlib.suppress(OSError):
                os.truncate(transfer.spool, transfer.size)
            raise
        transfer.size += len(data)
    return {"size": transfer.size}


def _int(body: Json, name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer")
    return value

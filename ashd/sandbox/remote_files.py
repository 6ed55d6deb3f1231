"""The files API of a sandbox on a runner, over the link (coordinator).

:class:`RemoteFiles` is the coordinator's :class:`~ashd.files.live.LiveFiles`: each method
sends ``files.*`` requests to the runner hosting the sandbox, which serves them with the
standalone code on its own disk (``ashd/sandbox/workspace_server.py``). Reads are pulled in
chunks of at most 1 MiB and writes pushed in chunks of :data:`CHUNK_BYTES`, so no message
nears the link's frame limit and a large file never sits whole in memory here (a download is
streamed to the client chunk by chunk). The runner's errors come back as the same
:class:`~ashd.errors.AshError` classes (status and code travel in the reply).

Blocking: every method waits for the loop (``loop``), so call them from worker threads
(the files routes' offload), never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ujson

from ashd.errors import (
    AshError,
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    SandboxFailed,
    Unavailable,
)
from ashd.files.contained import FileInfo, Parts
from ashd.files.live import LiveFiles, Readable
from ashd.runnerlink.mux import Json, LinkClosed, Mux, RequestFailed

CHUNK_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 60.0
BUNDLE_TIMEOUT_S = 300.0  # packing or unpacking a large workspace on the runner
_BY_STATUS: dict[int, type[AshError]] = {400: BadRequest, 403: Forbidden, 404: NotFound, 409: Conflict,
                                         413: PayloadTooLarge, 503: Unavailable, 507: InsufficientStorage}


def error_of(exc: RequestFailed) -> AshError:
    """The runner's answer as the error class its own code raised (502 when it was no AshError)."""
    cls = _BY_STATUS.get(exc.status or 0)
    if cls is None:
        return SandboxFailed(f"the runner could not serve the request: {exc}")
    return cls(str(exc))


class Link:
    """Requests to one runner from worker threads (each waits on the loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mux: Mux, runner_id: str) -> None:
        self._loop, self._mux, self.runner_id = loop, mux, runner_id

    def call(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **body: Any) -> Json:
        """Raises the runner's AshError, Unavailable (the link closed), SandboxFailed (no answer)."""
        future = asyncio.run_coroutine_threadsafe(self._mux.request(op, timeout=timeout, **body), self._loop)
        try:
            return future.result(timeout + 5)
        except RequestFailed as exc:
            raise error_of(exc) from None
        except LinkClosed:
            raise Unavailable(f"the link to runner {self.runner_id} closed; retry") from None
        except TimeoutError:
            future.cancel()
            raise SandboxFailed(f"runner {self.runner_id} did not answer {op} in time") from None


class _Download:
    """A transfer on the runner read as a file (``read``/``close``); blocking."""

    def __init__(self, link: Link, token: str) -> None:
        self._link, self._token = link, token
        self._buffer = b""
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buffer) < n):
            reply = self._link.call("files.chunk", token=self._token)
            self._buffer += base64.b64decode(reply.get("data", ""))
            self._eof = bool(reply.get("eof"))
        if n < 0:
            n = len(self._buffer)
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def close(self) -> None:
        try:
            self._link.call("files.close", token=self._token)
        except AshError:
            pass  # the runner closes it when idle anyway


class RemoteFiles:
    """:class:`LiveFiles` of sandbox ``sandbox_id`` on the runner behind ``link``."""

    source = "sandbox"

    def __init__(self, link: Link, sandbox_id: str) -> None:
        self._link, self._sandbox = link, sandbox_id

    def list_files(self, include_hidden: bool) -> list[FileInfo]:
        reply = self._link.call("files.list", sandbox=self._sandbox, hidden=include_hidden)
        stream = _Download(self._link, str(reply["token"]))
        try:
            rows = ujson.loads(stream.read())
        finally:
            stream.close()
        return [FileInfo(str(p), int(s), float(m)) for p, s, m in rows]

    def open_file(self, parts: Parts) -> tuple[Readable, int]:
        reply = self._link.call("files.open", sandbox=self._sandbox, path="/".join(parts))
        return _Download(self._link, str(reply["token"])), int(reply["size"])

    def write(self, parts: Parts, content: bytes) -> int:
        token = self._push(content)
        reply = self._link.call("files.commit", token=token, sandbox=self._sandbox, path="/".join(parts))
        return int(reply["size"])

    def delete(self, parts: Parts) -> None:
        self._link.call("files.delete", sandbox=self._sandbox, path="/".join(parts))

    def write_bundle(self, dest: Path, max_bytes: int) -> None:
        reply = self._link.call("files.bundle", BUNDLE_TIMEOUT_S, sandbox=self._sandbox, max_bytes=max_bytes)
        stream = _Download(self._link, str(reply["token"]))
        try:
            with open(dest, "wb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    out.write(chunk)
        finally:
            stream.close()

    def apply_bundle(self, archive: Path, max_bytes: int) -> int:
        token = self._push(archive.read_bytes())
        reply = self._link.call("files.apply", BUNDLE_TIMEOUT_S, token=token, sandbox=self._sandbox,
                                max_bytes=max_bytes)
        return int(reply["count"])

    def _push(self, content: bytes) -> str:
        """Spool ``content`` on the runner; its token (commit or apply consumes it)."""
        token = str(self._link.call("files.spool")["token"])
        try:
            for at in range(0, len(content), CHUNK_BYTES):
                self._link.call("files.append", token=token,
                                data=base64.b64encode(content[at:at + CHUNK_BYTES]).decode())
        except BaseException:
            _Download(self._link, token).close()
            raise
        return token


def remote_lookup(loop: asyncio.AbstractEventLoop, link_of: Callable[[str], Mux | None]
                  ) -> Callable[[str, str], LiveFiles | None]:
    """(runner id, sandbox id) -> the runner's live workspace of that sandbox, or None when
    the runner is not linked here or does not host it (one ``files.live`` round trip). Blocking."""
    def lookup(runner_id: str, sandbox_id: str) -> LiveFiles | None:
        mux = link_of(runner_id)
        if mux is None or mux.closed:
            return None
        link = Link(loop, mux, runner_id)
        try:
            link.call("files.live", sandbox=sandbox_id)
        except (NotFound, Unavailable):
            return None
        return RemoteFiles(link, sandbox_id)

    return lookup

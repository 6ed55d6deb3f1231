"""/api/sessions/:id/files and /workspace: a session's files, live or from its snapshot.

Where the files are and why writes need a running sandbox: ``ashd/files/sessions.py``.
Containment of every path: ``ashd/files/contained.py``. All file I/O runs off the loop.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ashd.errors import BadRequest, NotFound, PayloadTooLarge
from ashd.files import bundle
from ashd.files.archive_view import ArchiveView
from ashd.files.contained import Parts, parse_relative
from ashd.files.live import LiveFiles
from ashd.files.rules import listing_skip
from ashd.files.sessions import SessionFiles
from ashd.http.download import answer_file, open_binary, send_file
from ashd.http.sessions import SessionBase
from ashd.store import SessionRow
from ashd.store.timestamps import format_utc

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_BATCH_BYTES = 100 * 1024 * 1024
MAX_BATCH_FILES = 500
MAX_UPLOAD_BODY = 200 * 1024 * 1024
MAX_BUNDLE_BODY = 134 * 1024 * 1024
MAX_BUNDLE_BYTES = 100 * 1024 * 1024

def decode_b64(value: object, field: str) -> bytes:
    """Strict base64 (whitespace allowed). Raises BadRequest naming the field."""
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{field} is not valid base64") from None


@dataclass(frozen=True)
class Upload:
    shown: str
    parts: Parts
    content: bytes | None
    error: str | None = None


def parse_uploads(body: dict[str, Any]) -> list[Upload]:
    """Validate ``{files:[{path, content, mimeType?}], targetPath?}`` completely (blocking:
    decodes base64). A bad path or shape is a 400 for the whole request; a file that is too
    large gets a per-file error. Raises BadRequest / PayloadTooLarge."""
    files = body.get("files")
    if not isinstance(files, list) or not files:
        raise BadRequest("files must be a non-empty list of {path, content (base64)} objects")
    if len(files) > MAX_BATCH_FILES:
        raise PayloadTooLarge(f"at most {MAX_BATCH_FILES} files per request")
    target = parse_relative(body.get("targetPath", "."), "targetPath", allow_root=True)
    out: list[Upload] = []
    total = 0
    for i, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BadRequest(f"files[{i}] must be an object with a string 'path' and base64 'content'")
        parts = target + parse_relative(item["path"], f"files[{i}].path")
        mime = item.get("mimeType")
        if mime is not None and not isinstance(mime, str):
            raise BadRequest(f"files[{i}].mimeType must be a string")
        content = decode_b64(item.get("content"), f"files[{i}].content")
        if len(content) > MAX_FILE_BYTES:
            out.append(Upload(item["path"], parts, None, f"file is larger than {MAX_FILE_BYTES >> 20} MB"))
            continue
        total += len(content)
        if total > MAX_BATCH_BYTES:
            raise PayloadTooLarge(f"files exceed {MAX_BATCH_BYTES >> 20} MB in total; split the upload")
        out.append(Upload(item["path"], parts, content))
    return out


def upload_bytes(uploads: list[Upload]) -> int:
    """What the uploads would write, in bytes (refused ones write nothing)."""
    return sum(len(up.content or b"") for up in uploads)


def write_uploads(tree: LiveFiles, uploads: list[Upload]) -> list[dict[str, Any]]:
    """Write each file; a file the workspace refuses (a symlink or directory in the way)
    gets a per-file error, like Ash. Blocking."""
    results: list[dict[str, Any]] = []
    for up in uploads:
        if up.content is None:
            results.append({"path": up.shown, "written": False, "error": up.error})
            continue
        try:
            size = tree.write(up.parts, up.content)
        except (BadRequest, NotFound, PayloadTooLarge) as exc:
            results.append({"path": up.shown, "written": False, "error": exc.message})
        except OSError as exc:
            results.append({"path": up.shown, "written": False, "error": exc.strerror or str(exc)})
        else:
            results.append({"path": up.shown, "written": True, "size": size})
    return results


def file_json(path: str, size: int, mtime: float) -> dict[str, Any]:
    """Ash's file entry; ``modifiedAt`` as ``2026-01-02T03:04:05.678Z``."""
    return {"path": path, "size": size, "modifiedAt": format_utc(datetime.fromtimestamp(mtime, UTC))}


class SessionFilesBase(SessionBase):
    @property
    def files(self) -> SessionFiles:
        return self.ctx.session_files

    async def live(self, row: SessionRow) -> LiveFiles | None:
        return await self.ctx.offload.read(self.files.live_tree, row)

    async def require_live(self, row: SessionRow) -> LiveFiles:
        return await self.ctx.offload.read(self.files.require_live, row)

    @contextlib.asynccontextmanager
    async def snapshot(self, row: SessionRow) -> AsyncIterator[ArchiveView]:
        """The session's snapshot with the agent's read-only files over it; removed after."""
        offload = self.ctx.offload
        archive = await offload.read(self.files.fetch_snapshot, row)
        overlay = None
        try:
            overlay = await offload.read(self.files.snapshot_overlay, row)
            yield ArchiveView(archive, overlay[0] if overlay is not None else None)
        finally:
            archive.unlink(missing_ok=True)
            if overlay is not None:
                await offload.read(shutil.rmtree, overlay[1], True)

    def bool_arg(self, name: str, default: bool) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw not in ("true", "false"):
            raise BadRequest(f"{name} must be true or false")
        return raw == "true"


class SessionFilesHandler(SessionFilesBase):
    """GET: list (``?includeHidden=true|false``, default true). POST: upload files."""

    max_body = MAX_UPLOAD_BODY

    async def get(self, session_id: str) -> None:
        hidden = self.bool_arg("includeHidden", True)
        skip = listing_skip(hidden)
        row = await self.session_row(session_id)
        tree = await self.live(row)
        if tree is not None:
            infos = await self.ctx.offload.read(tree.list_files, hidden)
            source = "sandbox"
        else:
            async with self.snapshot(row) as view:
                infos = await self.ctx.offload.read(view.list_files, skip)
            source = "snapshot"
        self.send_json({"files": [file_json(i.path, i.size, i.mtime) for i in infos], "source": source})

    async def post(self, session_id: str) -> None:
        body = self.json_body()
        row = await self.session_row(session_id)
        uploads = await self.ctx.offload.read(parse_uploads, body)
        tree = await self.require_live(row)
        # A workspace image's growth was promised at admission; without one (sandbox.isolation =
        # none) the files land on the data disk itself.
        self.ctx.keep_floor(upload_bytes(uploads), "these files")
        results = await self.ctx.offload.read(write_uploads, tree, uploads)
        self.send_json({"files": results})


class SessionFileHandler(SessionFilesBase):
    """GET one file (raw by default, or ``?format=json``); DELETE one file."""

    async def get(self, session_id: str, raw_path: str) -> None:
        fmt = self.get_query_argument("format", "raw")
        if fmt not in ("raw", "json"):
            raise BadRequest("format must be raw or json")
        parts = parse_relative(raw_path)
        row = await self.session_row(session_id)
        tree = await self.live(row)
        hint = "; download the workspace bundle instead"
        if tree is not None:
            f, size = await self.ctx.offload.read(tree.open_file, parts)
            await answer_file(self, f, size, "/".join(parts), fmt, hint, source="sandbox")
            return
        async with self.snapshot(row) as view:
            f, size, _mtime = await self.ctx.offload.read(view.open_file, parts)
            await answer_file(self, f, size, "/".join(parts), fmt, hint, source="snapshot")

    async def delete(self, session_id: str, raw_path: str) -> None:
        parts = parse_relative(raw_path)
        row = await self.session_row(session_id)
        tree = await self.require_live(row)
        await self.ctx.offload.read(tree.delete, parts)
        self.send_json({"path": "/".join(parts), "deleted": True})


class WorkspaceHandler(SessionFilesBase):
    """GET: the workspace as tar.gz. POST ``{bundle}``: unpack a tar.gz into the live workspace."""

    max_body = MAX_BUNDLE_BODY

    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        tree = await self.live(row)
        async with self.ctx.bundle_room.taken(self.tenant):
            await self._send_bundle(row, tree)

    async def _send_bundle(self, row: SessionRow, tree: LiveFiles | None) -> None:
        offload, files = self.ctx.offload, self.files
        out = await offload.read(files.temp_file, ".tar.gz")
        try:
            if tree is not None:
                await offload.read(tree.write_bundle, out, MAX_BUNDLE_BYTES)
            else:
                async with self.snapshot(row) as view:
                    await offload.read(bundle.rebundle, view.archive, out, MAX_BUNDLE_BYTES, view.overlay)
            f = await offload.read(open_binary, out)
            size = (await offload.read(os.fstat, f.fileno())).st_size
            name = f"workspace-{row.id}.tar.gz"
            await send_file(self, f, size, name, "application/gzip",
                            extra={"X-Ash-Source": "sandbox" if tree is not None else "snapshot"})
        finally:
            out.unlink(missing_ok=True)

    async def post(self, session_id: str) -> None:
        body = self.json_body()
        row = await self.session_row(session_id)
        if "bundle" not in body:
            raise BadRequest("bundle is required: a base64-encoded tar.gz of the workspace")
        data = await self.ctx.offload.read(decode_b64, body["bundle"], "bundle")
        if not data:
            raise BadRequest("bundle is empty")
        if not data.startswith(bundle.GZIP_MAGIC):
            raise BadRequest("bundle is not gzip data; send a base64-encoded tar.gz")
        tree = await self.require_live(row)
        async with self.ctx.bundle_room.taken(self.tenant):
            count = await self.ctx.offload.read(self._apply, tree, data)
        self.send_json({"message": f"Workspace updated: {count} entries extracted"})

    def _apply(self, tree: LiveFiles, data: bytes) -> int:
        """Blocking: spool to a private file, check, extract."""
        path = self.files.temp_file(".tar.gz")
        try:
            path.write_bytes(data)
            return tree.apply_bundle(path, self.ctx.config.snapshot.max_bytes)
        finally:
            path.unlink(missing_ok=True)

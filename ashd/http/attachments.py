"""/api/sessions/:id/attachments and /api/attachments/:id.

Bytes are kept under the data dir per tenant, session and attachment id
(``ashd/files/attachments.py``) and also copied into the live workspace's ``attachments/``
folder when the session has a running sandbox (best effort: the attachment is stored either
way). Size limits: ``ASH_MAX_ATTACHMENT_SIZE`` (decoded bytes, default 10 MB) per attachment
and ``ASH_MAX_SESSION_ATTACHMENTS_SIZE`` (default 100 MB) for a session's together -> 413
(one session's posts are taken one at a time, so two cannot pass on the same room); none is
stored where it would take the data disk into the store's floor (half the disk reserve, as
snapshots) -> 507.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from typing import Any

from ashd.errors import AshError, BadRequest, NotFound, PayloadTooLarge
from ashd.files import attachments as storage
from ashd.http.base import ApiHandler
from ashd.http.download import content_type, open_binary, send_file
from ashd.http.keyed_locks import KeyedLocks
from ashd.http.session_files import SessionFilesBase, decode_b64
from ashd.store.attachment_queries import AttachmentRow

log = logging.getLogger(__name__)


_posting = KeyedLocks()  # session id -> its attachment posts, one at a time


def attachment_json(row: AttachmentRow) -> dict[str, Any]:
    return {
        "id": row.id, "sessionId": row.session_id, "tenantId": row.tenant_id,
        "messageId": row.message_id or None, "filename": row.filename, "mimeType": row.mime_type,
        "size": row.size, "createdAt": row.created_at,
    }


def _uuid(raw: object, field: str) -> str:
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        raise BadRequest(f"{field} must be a UUID, got {raw!r}") from None


class SessionAttachmentsHandler(SessionFilesBase):
    """POST ``{filename, content (base64), mimeType?, messageId?}`` -> 201; GET -> list."""

    async def prepare(self) -> None:
        # base64 grows by 4/3; leave room for the other fields
        self.max_body = self.ctx.config.max_attachment_size * 4 // 3 + 64 * 1024
        await super().prepare()

    async def post(self, session_id: str) -> None:
        limit = self.ctx.config.max_attachment_size
        if len(self.request.body) > self.max_body:
            raise PayloadTooLarge(f"attachment is larger than the limit of {limit} bytes (ASH_MAX_ATTACHMENT_SIZE)")
        body = self.json_body()
        filename = body.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise BadRequest("filename must be a non-empty string")
        mime = body.get("mimeType")
        if mime is not None and not isinstance(mime, str):
            raise BadRequest("mimeType must be a string")
        message_id = "" if body.get("messageId") is None else _uuid(body["messageId"], "messageId")
        content = await self.ctx.offload.read(decode_b64, body.get("content"), "content")
        if not content:
            raise BadRequest("content is empty; send the file's bytes as base64")
        if len(content) > limit:
            raise PayloadTooLarge(
                f"attachment is {len(content)} bytes, over the limit of {limit} (ASH_MAX_ATTACHMENT_SIZE)")
        row = await self.session_row(session_id)
        name = storage.safe_basename(filename)
        async with _posting(row.id):
            stored = await self._store(row, AttachmentRow(
                str(uuid.uuid4()), self.tenant, row.id, message_id, name, content_type(name, mime), len(content),
                "", ""), content)
        await self._copy_to_workspace(row, name, content)
        self.send_json({"attachment": attachment_json(stored)}, status=201)

    async def _store(self, row: Any, att: AttachmentRow, content: bytes) -> AttachmentRow:
        """Write the bytes and their row, within the session's and the disk's room."""
        config, offload = self.ctx.config, self.ctx.offload
        held = sum(r.size for r in await offload.read(self.ctx.store.list_attachments, self.tenant, row.id))
        if held + att.size > config.max_session_attachments_size:
            raise PayloadTooLarge(
                f"this session's attachments hold {held} bytes; {att.size} more would pass the limit of "
                f"{config.max_session_attachments_size} (ASH_MAX_SESSION_ATTACHMENTS_SIZE): delete some first")
        self.ctx.keep_floor(att.size, "this attachment")
        folder = storage.attachment_dir(config.data_dir, self.tenant, row.id, att.id)
        path = await offload.read(storage.save, folder, att.filename, content)
        try:
            return await offload.write(self.ctx.store.add_attachment, dataclasses.replace(att, storage_path=str(path)))
        except BaseException:
            await offload.read(storage.remove, config.data_dir, str(path))
            raise

    async def _copy_to_workspace(self, row: Any, name: str, content: bytes) -> None:
        tree = await self.live(row)
        if tree is None:
            return
        try:
            await self.ctx.offload.read(tree.write, ("attachments", name), content)
        except (AshError, OSError) as exc:
            log.warning("session %s: attachment %s not copied into the workspace: %s", row.id, name, exc)

    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        rows = await self.ctx.offload.read(self.ctx.store.list_attachments, self.tenant, row.id)
        self.send_json({"attachments": [attachment_json(r) for r in rows]})


class AttachmentHandler(ApiHandler):
    """GET: the bytes (download headers, nosniff). DELETE: remove it -> 204."""

    async def _row(self, raw_id: str) -> AttachmentRow:
        row = await self.ctx.offload.read(self.ctx.store.get_attachment, self.tenant, _uuid(raw_id, "attachment id"))
        if row is None:
            raise NotFound(f"Attachment {raw_id} not found")
        return row

    async def get(self, attachment_id: str) -> None:
        row = await self._row(attachment_id)
        try:
            f = await self.ctx.offload.read(open_binary, row.storage_path)
        except FileNotFoundError:
            raise NotFound(f"Attachment {attachment_id}'s bytes are missing on this server") from None
        size = (await self.ctx.offload.read(os.fstat, f.fileno())).st_size
        await send_file(self, f, size, row.filename, row.mime_type)

    async def delete(self, attachment_id: str) -> None:
        row = await self._row(attachment_id)
        await self.ctx.offload.write(self.ctx.store.delete_attachment, self.tenant, row.id)
        await self.ctx.offload.read(storage.remove, self.ctx.config.data_dir, row.storage_path)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

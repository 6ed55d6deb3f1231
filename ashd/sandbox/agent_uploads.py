"""Agent archives arriving at a runner over its links (``agent`` requests).

Each request is one chunk ``{key, upload, offset, total, data}`` of an archive
(ashd/sandbox/agent_cache.py); the last one extracts it into the agent cache. At most
:data:`MAX_UPLOADS` arrive at once; a link's unfinished ones are dropped when it closes.

The runner's disk: every chunk written, and the extraction (at most the cache's
``MAX_CONTENT_BYTES``), is admitted first by the runner's disk rule (``room``:
ashd/sandbox/linked_admission.py), so an agent never eats what a workspace image was
promised or the reserve; a refusal is a 507 and drops the upload.

Loop thread; file work runs on the default executor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from pathlib import Path

from ashd.errors import SandboxFailed
from ashd.runnerlink.mux import Json, Mux
from ashd.sandbox.agent_cache import MAX_CONTENT_BYTES, AgentCache, AgentUpload
from ashd.sandbox.launch_order import check_key
from ashd.sandbox.workspace_server import Room, any_room

MAX_UPLOADS = 8  # agent archives being received at once (each up to agent_cache.MAX_ARCHIVE_BYTES on disk)
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class AgentUploads:
    def __init__(self, cache: AgentCache, loop: asyncio.AbstractEventLoop, room: Room = any_room) -> None:
        self._cache = cache
        self._loop = loop
        self._room = room
        self._uploads: dict[str, tuple[AgentUpload, Mux]] = {}  # upload id -> (upload, its link)

    @property
    def arriving(self) -> int:
        """Uploads begun and not finished."""
        return len(self._uploads)

    def hold(self, key: str) -> Path | None:
        """The cached folder of agent version ``key`` (None: not cached), kept from eviction
        until :meth:`release`."""
        return self._cache.hold(key)

    def release(self, key: str) -> None:
        self._cache.release(key)

    async def put(self, mux: Mux, body: Json) -> Json:
        """One chunk; ``{"cached": True}`` once the agent is in the cache. Raises SandboxFailed,
        InsufficientStorage (the upload is dropped)."""
        upload_id, offset, total = body.get("upload"), body.get("offset"), body.get("total")
        if not (isinstance(upload_id, str) and UPLOAD_ID.match(upload_id) and isinstance(offset, int)
                and isinstance(total, int)):
            raise SandboxFailed("agent chunk needs an upload id (32 hex digits), an offset and a total")
        try:
            data = base64.b64decode(str(body.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise SandboxFailed("agent archive chunk is not base64") from None
        upload = self._uploads.get(upload_id, (None, mux))[0]
        if upload is None:
            if len(self._uploads) >= MAX_UPLOADS:
                raise SandboxFailed(f"more than {MAX_UPLOADS} agent uploads at once; retry shortly")
            upload = await self._loop.run_in_executor(
                None, AgentUpload, self._cache.root, check_key(body.get("key"), "agent version"), total)
            self._uploads[upload_id] = (upload, mux)
        try:
            if upload.key != body.get("key") or upload.total != total:
                raise SandboxFailed("agent chunk does not match its upload's key and total")
            if await self._loop.run_in_executor(None, self._add, upload, offset, data):
                await self._loop.run_in_executor(None, self._extract, upload)
                self._drop(upload_id)
                return {"cached": True}
        except BaseException:
            self._drop(upload_id)
            raise
        return {}

    def link_lost(self, mux: Mux) -> None:
        """Drop the link's unfinished uploads."""
        for upload_id in [u for u, (_, owner) in self._uploads.items() if owner is mux]:
            self._drop(upload_id)

    def _add(self, upload: AgentUpload, offset: int, data: bytes) -> bool:
        with self._room(len(data)):
            return upload.add(offset, data)

    def _extract(self, upload: AgentUpload) -> None:
        with self._room(MAX_CONTENT_BYTES):
            self._cache.put_upload(upload)

    def _drop(self, upload_id: str) -> None:
        upload, _ = self._uploads.pop(upload_id, (None, None))
        if upload is not None:
            upload.discard()

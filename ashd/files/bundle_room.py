"""What the API's workspace bundles may take of the data disk at once.

Downloading a workspace (``GET /api/sessions/:id/workspace``) writes its tar.gz under
``<data>/tmp`` before it is sent; uploading one (``POST``) writes the decoded archive there
before it is unpacked. At most ``slots`` do so at once (the rest wait their turn), and one
starts only if the data disk keeps the store's floor (half the reserve, as for snapshots:
:func:`~ashd.sandbox.admission.store_floor`) beside the largest bundle each one in flight may
write; else a 507 that says so. Loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ashd.errors import InsufficientStorage
from ashd.snapshot.room import DiskFloor

SLOTS = 2
LARGEST = 134 * 1024 * 1024  # a download's tar.gz of at most 100 MB of files, or an upload's decoded body


class BundleRoom:
    def __init__(self, floor: DiskFloor, largest: int = LARGEST, slots: int = SLOTS) -> None:
        """``largest``: the most one bundle writes."""
        self.floor = floor
        self._largest = largest
        self._slots = asyncio.Semaphore(slots)
        self._in_flight = 0

    @contextlib.asynccontextmanager
    async def taken(self) -> AsyncIterator[None]:
        """A bundle may be written in the block. Raises InsufficientStorage."""
        async with self._slots:
            if self.floor.free() - (self._in_flight + 1) * self._largest < self.floor.min_free:
                raise InsufficientStorage(
                    f"the data disk is too full to bundle this workspace now: its last {self.floor.min_free >> 20} "
                    "MiB are kept for the database. Retry later, or move files one by one", 30)
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

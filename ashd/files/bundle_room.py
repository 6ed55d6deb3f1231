"""What the API's workspace bundles may take of the data disk at once.

Downloading a workspace (``GET /api/sessions/:id/workspace``) writes its tar.gz under
``<data>/tmp`` and keeps it there while it is sent; uploading one (``POST``) writes the decoded
archive there before it is unpacked. A tenant has at most ``slots`` under way at once (its
others wait their turn; a slow reader holds up only its own tenant), and one starts only if
the data disk keeps the store's floor (half the reserve, as for snapshots:
:func:`~ashd.sandbox.admission.store_floor`) beside the largest bundle each one under way, of
every tenant, may write; else a 507 that says so. Loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
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
        self._slots = slots
        self._tenants: weakref.WeakValueDictionary[str, asyncio.Semaphore] = weakref.WeakValueDictionary()
        self._in_flight = 0

    @contextlib.asynccontextmanager
    async def taken(self, tenant_id: str) -> AsyncIterator[None]:
        """A bundle of ``tenant_id``'s may be written (and sent) in the block. Raises
        InsufficientStorage."""
        async with self._tenant(tenant_id):
            if self.floor.free() - (self._in_flight + 1) * self._largest < self.floor.min_free:
                raise InsufficientStorage(
                    f"the data disk is too full to bundle this workspace now: its last {self.floor.min_free >> 20} "
                    "MiB are kept for the database. Retry later, or move files one by one", 30)
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

    def _tenant(self, tenant_id: str) -> asyncio.Semaphore:
        """The tenant's slots, kept while one is taken or waited for."""
        slots = self._tenants.get(tenant_id)
        if slots is None:
            slots = self._tenants[tenant_id] = asyncio.Semaphore(self._slots)
        return slots

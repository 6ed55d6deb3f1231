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

import contextlib
from collections.abc import AsyncIterator

from ashd.errors import InsufficientStorage
from ashd.http.keyed_locks import KeyedLocks
from ashd.snapshot.room import DiskFloor

SLOTS = 2
LARGEST = 134 * 1024 * 1024  # a download's tar.gz of at most 100 MB of files, or an upload's decoded body


class BundleRoom:
    def __init__(self, floor: DiskFloor, largest: int = LARGEST, slots: int = SLOTS) -> None:
        """``largest``: the most one bundle writes."""
        self._floor = floor
        self._largest = largest
        self._tenants = KeyedLocks(slots)  # a tenant's slots, kept while one is taken or waited for
        self._in_flight = 0

    @contextlib.asynccontextmanager
    async def taken(self, tenant_id: str) -> AsyncIterator[None]:
        """A bundle of ``tenant_id``'s may be written (and sent) in the block. Raises
        InsufficientStorage."""
        async with self._tenants(tenant_id):
            if not self._floor.room_for((self._in_flight + 1) * self._largest):
                raise InsufficientStorage(
                    f"the data disk is too full to bundle this workspace now: its last {self._floor.min_free >> 20} "
                    "MiB are kept for the database. Retry later, or move files one by one", 30)
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

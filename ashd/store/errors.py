"""Exceptions raised by the persistence layer: a branch of ashd's one error tree.

Everything the store raises on purpose derives from :class:`StoreError`, an
:class:`~ashd.errors.AshError`, so it reaches a client with the status its meaning has
(``ashd/errors.py`` maps every class once): a uniqueness rule broken by the request is a
409 like any other :class:`~ashd.errors.Conflict`, an unreachable database a 503 with a
retry hint like any other :class:`~ashd.errors.Unavailable`, anything else a 500.
Callers may still catch the store's own classes to handle persistence failures apart.
"""

from __future__ import annotations

from ashd import errors


class StoreError(errors.AshError):
    """Root of all persistence errors (also raised for unknown parent rows)."""

    status, code = 500, "store"


class StoreUnavailable(StoreError, errors.Unavailable):
    """The database cannot be reached or opened; the message names the masked URL."""

    status, code = 503, "store_unavailable"


class Conflict(StoreError, errors.Conflict):
    """A uniqueness rule was violated (duplicate id, key hash or sequence)."""

    status, code = 409, "conflict"

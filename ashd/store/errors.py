"""Exceptions raised by the persistence layer.

Everything the store raises on purpose derives from :class:`StoreError`, so callers
(the HTTP layer, actors) can map it once into ashd's error tree.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of all persistence errors (also raised for unknown parent rows)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened; the message names the masked URL."""


class Conflict(StoreError):
    """A uniqueness rule was violated (duplicate id, key hash or sequence)."""

"""Keep pykka from logging expected errors that an actor returns to its caller.

pykka logs every exception an actor method raises for an ``ask`` ("Exception returned from
... to caller") with a full traceback at INFO. For ashd's own errors (``AshError``: a 409 for
a second turn, a 404 for an unknown session) that is noise: the caller receives the error and
decides how to report it (the HTTP layer answers with the status; the access log has the
line). Anything else an actor raises is still logged by pykka.
"""

from __future__ import annotations

import logging

from ashd.errors import AshError
from ashd.store import StoreError

PYKKA_LOGGER = "pykka"


class ExpectedErrorFilter(logging.Filter):
    """Drops pykka's records whose exception is an ``AshError`` other than the store's
    (a failing database stays in the log with its traceback, as before it joined the tree)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, AshError) or isinstance(exc, StoreError)


def quiet_expected_errors() -> None:
    """Install the filter on pykka's logger (entry points only; idempotent)."""
    logger = logging.getLogger(PYKKA_LOGGER)
    if not any(isinstance(f, ExpectedErrorFilter) for f in logger.filters):
        logger.addFilter(ExpectedErrorFilter())

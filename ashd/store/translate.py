"""Translation of SQLAlchemy/driver errors into the ``StoreError`` family.

Messages carry the driver's first line only: never SQL text or bound parameters
(which may hold API key hashes or message content).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from .dialect import is_unique_violation
from .errors import Conflict, StoreError, StoreUnavailable


@contextmanager
def translated_errors(url_masked: str) -> Iterator[None]:
    """Re-raise database errors as Conflict, StoreUnavailable or StoreError.

    Unique violations become Conflict; connection failures, SQLite "database is
    locked" beyond busy_timeout and pool exhaustion become StoreUnavailable.
    """
    try:
        yield
    except sa.exc.IntegrityError as exc:
        if is_unique_violation(exc):
            raise Conflict(f"this conflicts with a record stored meanwhile ({reason(exc)}); "
                           "reload and retry, or use another name") from exc
        raise StoreError(reason(exc)) from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        raise StoreUnavailable(f"database {url_masked} failed: {reason(exc)}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(reason(exc)) from exc


def reason(exc: BaseException) -> str:
    """The driver's first message line (the wrapped DBAPI error's if there is one)."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

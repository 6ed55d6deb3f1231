"""API key scopes: ``admin`` ⊃ ``write`` ⊃ ``read``, and which scope a route needs.

Every ``ApiHandler`` method needs a scope. By default GET/HEAD/OPTIONS need ``read`` and
every other method ``write``; a handler class declares stricter needs with
``required_scope``: one scope for all its methods (``required_scope = "admin"``) or a
mapping per method (``required_scope = {"GET": "read", "POST": "admin"}``; methods it
does not name keep the default). Pure functions, any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ashd.errors import BadRequest, Forbidden

ADMIN, WRITE, READ = "admin", "write", "read"
SCOPES = (ADMIN, WRITE, READ)  # strongest first
_RANK = {READ: 1, WRITE: 2, ADMIN: 3}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

RequiredScope = str | Mapping[str, str] | None


def parse(stored: str) -> frozenset[str]:
    """The stored, space-separated form (``"read write"``) -> its scopes; unknown words are
    ignored (a key whose row names none of them has no rights)."""
    return frozenset(word for word in stored.split() if word in _RANK)


def render(scopes: Iterable[str]) -> list[str]:
    """Scopes as a list, strongest first (the wire form)."""
    return sorted(set(scopes), key=lambda s: -_RANK[s])


def strongest(scopes: Iterable[str]) -> int:
    return max((_RANK[s] for s in scopes if s in _RANK), default=0)


def grants(held: Iterable[str], needed: str) -> bool:
    """True if a key holding ``held`` may do what needs ``needed`` (admin implies write, read)."""
    return strongest(held) >= _RANK[needed]


def required(declared: RequiredScope, method: str) -> str:
    """The scope ``method`` needs on a handler declaring ``declared``."""
    if isinstance(declared, str):
        return declared
    if declared is not None and method in declared:
        return declared[method]
    return READ if method in READ_METHODS else WRITE


def check(held: frozenset[str], needed: str) -> None:
    """Raise Forbidden (403) if ``held`` does not grant ``needed``."""
    if not grants(held, needed):
        has = ", ".join(render(held)) or "no scopes"
        raise Forbidden(f"This API key lacks the '{needed}' scope (it has: {has})")


def from_request(value: object, held: frozenset[str], field: str = "scopes") -> frozenset[str]:
    """Validate a requested ``scopes`` list for a new key. Absent: the scopes of the key
    asking (``held``). Raises BadRequest naming what to fix, Forbidden when asking for a
    scope stronger than the asker's own."""
    if value is None:
        return held
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{field} must be a non-empty list of scope names ({', '.join(SCOPES)})")
    unknown = [v for v in value if v not in _RANK]
    if unknown:
        raise BadRequest(f"{field}: unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    wanted = frozenset(value)
    for scope in render(wanted):
        if not grants(held, scope):
            has = ", ".join(render(held)) or "no scopes"
            raise Forbidden(f"A key can only grant scopes it has itself: '{scope}' asked, this key has: {has}")
    return wanted

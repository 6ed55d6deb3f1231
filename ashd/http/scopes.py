"""API key scopes: ``admin`` ⊃ ``write`` ⊃ ``read``, and which scope a route needs.

Every ``ApiHandler`` method needs a scope. By default GET/HEAD/OPTIONS need ``read`` and
every other method ``write``; a handler class declares stricter needs with
``required_scope``: one scope for all its methods (``required_scope = "admin"``) or a
mapping per method (``required_scope = {"GET": "read", "POST": "admin"}``; methods it
does not name keep the default).

Besides the ranked scopes a key may hold *operator grants*: rights outside the tenant's own
objects that only the operator hands out (through ``/api/internal/api-keys``; a tenant's
key can never grant them, not even one holding them). ``deploy-path``: register a folder
on the server (``POST /api/agents {path}``, see ``ashd/files/agent_path.py``). ``ASH_API_KEY`` and
the bootstrap key of the default tenant hold it. Pure functions, any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ashd.errors import BadRequest, Forbidden

ADMIN, WRITE, READ = "admin", "write", "read"
SCOPES = (ADMIN, WRITE, READ)  # strongest first
_RANK = {READ: 1, WRITE: 2, ADMIN: 3}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEPLOY_PATH = "deploy-path"
OPERATOR_GRANTS = (DEPLOY_PATH,)
OPERATOR = frozenset({ADMIN, DEPLOY_PATH})  # ASH_API_KEY and the bootstrap key

RequiredScope = str | Mapping[str, str] | None


def parse(stored: str) -> frozenset[str]:
    """The stored, space-separated form (``"read write"``) -> its scopes and operator
    grants; unknown words are ignored (a key whose row names none of them has no rights)."""
    return frozenset(word for word in stored.split() if word in _RANK or word in OPERATOR_GRANTS)


def render(scopes: Iterable[str]) -> list[str]:
    """Scopes as a list, strongest first, then operator grants (the wire form)."""
    held = set(scopes)
    return (sorted(held & _RANK.keys(), key=lambda s: -_RANK[s])
            + [g for g in OPERATOR_GRANTS if g in held])


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


def from_request(value: object, held: frozenset[str], field: str = "scopes", *,
                 operator: bool = False) -> frozenset[str]:
    """Validate a requested ``scopes`` list for a new key. Absent: the ranked scopes of the
    key asking (``held``). Operator grants are accepted only when ``operator`` (the internal
    route). Raises BadRequest naming what to fix, Forbidden when asking for a scope stronger
    than the asker's own or for an operator grant without being the operator."""
    if value is None:
        return held & _RANK.keys()
    known = SCOPES + OPERATOR_GRANTS
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{field} must be a non-empty list of scope names ({', '.join(known)})")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise BadRequest(f"{field}: unknown scope {unknown[0]!r}; known: {', '.join(known)}")
    grants_asked = [v for v in value if v in OPERATOR_GRANTS]
    if grants_asked and not operator:
        raise Forbidden(f"{field}: '{grants_asked[0]}' is granted only by the operator "
                        "(POST /api/internal/api-keys with ASH_INTERNAL_SECRET)")
    if not set(value) - set(OPERATOR_GRANTS):
        raise BadRequest(f"{field} must name at least one of {', '.join(SCOPES)}")
    wanted = frozenset(value)
    for scope in render(wanted & _RANK.keys()):
        if not grants(held, scope):
            has = ", ".join(render(held)) or "no scopes"
            raise Forbidden(f"A key can only grant scopes it has itself: '{scope}' asked, this key has: {has}")
    return wanted

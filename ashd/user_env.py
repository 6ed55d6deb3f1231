"""Which environment variables an agent or a session may set (pure; raises BadRequest).

Reserved names cannot be set: they steer the CLI, the bridge or the dynamic loader, and the
sandbox sets them itself (``ashd/sandbox/env.py``). Checked where a request names them, so
the options and the agents API need nothing of the sandbox layer.
"""

from __future__ import annotations

import re

from ashd.errors import BadRequest

RESERVED_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "IS_SANDBOX", "TMPDIR"})
RESERVED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "ASH_", "LD_", "PYTHON", "OTEL_")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 32 * 1024


def validate_user_env(env: object, field: str) -> dict[str, str]:
    """Check a user-supplied env map; raise BadRequest naming what to fix."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise BadRequest(f"{field} must be an object of string values")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadRequest(f"{field}: {name!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise BadRequest(f"{field}.{name} must be a string")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise BadRequest(f"{field}.{name} is longer than {MAX_VALUE_BYTES} bytes")
        if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
            raise BadRequest(f"{field}.{name} is reserved by ashd and cannot be set")
        out[name] = value
    return out

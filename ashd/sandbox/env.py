"""The environment a sandboxed CLI gets: built from an allowlist, never inherited.

ashd's own environment (its database URL, API keys, anything an operator exported) never
reaches an agent. Per-agent and per-session variables are merged on top, but reserved
names cannot be overridden: they steer the CLI, the bridge or the dynamic loader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

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


def sandbox_env(
    *,
    home: str,
    model_base_url: str,
    model_key: str,
    model_auth_token: str,
    user_env: Mapping[str, str],
) -> dict[str, str]:
    """The complete environment of the bridge and the CLI it starts."""
    env = dict(user_env)
    env.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "CLAUDE_CONFIG_DIR": f"{home}/.claude",
        "ANTHROPIC_BASE_URL": model_base_url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    })
    if model_auth_token:
        env["ANTHROPIC_AUTH_TOKEN"] = model_auth_token
    else:
        env["ANTHROPIC_API_KEY"] = model_key
    if os.geteuid() == 0:
        # The CLI refuses bypassPermissions as root unless told it is sandboxed.
        env["IS_SANDBOX"] = "1"
    return env

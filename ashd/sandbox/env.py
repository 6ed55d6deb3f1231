"""The environment a sandboxed CLI gets: built from an allowlist, never inherited.

ashd's own environment (its database URL, API keys, anything an operator exported) never
reaches an agent. Per-agent and per-session variables are merged on top, but reserved
names cannot be overridden: they steer the CLI, the bridge or the dynamic loader (the
names are checked when a request sets them: ``ashd/user_env.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


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

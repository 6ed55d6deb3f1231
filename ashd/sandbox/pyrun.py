"""How ashd runs one of its own modules in a child Python (the bridge, the CLI wrapper, the zygote).

These children run as root on the host, and some start in a session's workspace, which the
agent writes. ``python -m`` puts its working directory first on ``sys.path``; ``-P`` (Python
3.11+) leaves it out, so a package the agent (or a deployed agent folder) put in the workspace,
such as ``ashd/`` or ``claude_agent_sdk/``, is never imported outside the sandbox
(``tests/security/test_battery.py``).
"""

from __future__ import annotations

import sys


def module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``module`` with ashd's interpreter, the working directory not on sys.path."""
    return [sys.executable, "-P", "-m", module, *args]

"""How ashd runs one of its own modules in a child Python (the bridge, the CLI wrapper, the zygote).

These children run as root on the host, and some start in a session's workspace, which the
agent writes. ``python -m`` puts its working directory first on ``sys.path``; ``-P`` (Python
3.11+) leaves it out, so a package the agent (or a deployed agent folder) put in the workspace,
such as ``ashd/`` or ``claude_agent_sdk/``, is never imported outside the sandbox
(``tests/security/test_battery.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import ashd

# The folder that holds the ashd package (site-packages, or the checkout of an editable install).
ASHD_ROOT = str(Path(ashd.__file__).resolve().parent.parent)


def module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``module`` with ashd's interpreter, the working directory not on sys.path."""
    return [sys.executable, "-P", "-m", module, *args]


def lean_module_argv(module: str, *args: str) -> list[str]:
    """Like :func:`module_argv` for a module that needs only the standard library and ashd and
    defines ``entry() -> int`` (its ``__main__``; ``sys.argv[1:]`` are ``args``): isolated mode
    without ``site`` (``-I -S``: no site-packages, no ``PYTHON*`` variables, no working
    directory on sys.path), with ashd's own folder put on sys.path, and the module imported
    and its ``entry`` called (``runpy`` alone would import ~6 ms of modules). Starts in about a
    third of the time: the CLI wrapper runs on every CLI start."""
    code = f"import sys; sys.path.insert(0, {ASHD_ROOT!r}); from {module} import entry; sys.exit(entry())"
    return [sys.executable, "-I", "-S", "-c", code, *args]

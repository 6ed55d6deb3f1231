"""rlimits: the last-resort limits, set by the CLI wrapper before it drops to the sandbox uid.

Always applied, as defense in depth: with a dedicated host uid per sandbox, RLIMIT_NPROC
(counted per real uid, threads included) bounds the sandbox's tasks like ``pids.max`` does,
and RLIMIT_CORE=0 keeps memory images off the disk. The Bash tool's commands get a lower
RLIMIT_NPROC than the CLI (:func:`toolshell`), so a fork bomb in a tool cannot take the
CLI's last tasks. Where no cgroup hierarchy is usable they
are the only limits left: they bound tasks, not memory or CPU, and the isolation report says
so (the default floor still refuses to run without cgroup limits).
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI wrapper imports this module on every CLI start: nothing heavy at run time
    from ashd.limit_fields import Limits

TOOLSHELL_TEMPLATE = """#!/bin/bash
# ashd: every Bash tool command runs under a lower task limit than the agent's CLI. RLIMIT_NPROC
# counts every task of the sandbox uid, the CLI's threads included, so a runaway tool stops at
# {tools} and leaves the CLI {reserve} tasks to live on (a CLI that cannot make a thread aborts).
[ "$#" -eq 1 ] || {{ echo "ashd toolshell: expected one command line" >&2; exit 2; }}
ulimit -u {tools} || exit 126
exec /bin/bash -c "$1"
"""


def plan(limits: Limits) -> dict[str, int]:
    """The rlimits for a sandbox, by name (pure); no task bound where ``pids`` is unset."""
    values = {"core": 0}
    if limits.pids:
        values["nproc"] = limits.pids
    return values


def tool_tasks(pids: int) -> int:
    """How many tasks of the sandbox uid a tool may bring it to: ``pids`` less the CLI's
    reserve (a quarter, at least 16 and at most 64)."""
    return max(1, pids - max(16, min(64, pids // 4)))


def for_exec(values: dict[str, int]) -> dict[str, int]:
    """Pure: the sandbox's rlimits (:func:`plan`) for an ``exec`` command from the API, held to
    the tools' task limit like the Bash tool's commands (:func:`toolshell`), so it cannot
    starve the CLI."""
    if "nproc" not in values:
        return values
    return {**values, "nproc": tool_tasks(values["nproc"])}


def toolshell(pids: int) -> str:
    """The script the CLI runs every Bash tool command through (``CLAUDE_CODE_SHELL_PREFIX``)."""
    tools = tool_tasks(pids)
    return TOOLSHELL_TEMPLATE.format(tools=tools, reserve=pids - tools)


def apply(values: dict[str, int]) -> None:
    """Set them on this process (inherited across exec and the uid drop). Raises OSError."""
    names = {"nproc": resource.RLIMIT_NPROC, "core": resource.RLIMIT_CORE}
    for name, value in values.items():
        resource.setrlimit(names[name], (value, value))

"""rlimits: the last-resort limits, set by the CLI wrapper before it drops to the sandbox uid.

Always applied, as defense in depth: with a dedicated host uid per sandbox, RLIMIT_NPROC
(counted per real uid, threads included) bounds the sandbox's tasks like ``pids.max`` does,
and RLIMIT_CORE=0 keeps memory images off the disk. Where no cgroup hierarchy is usable they
are the only limits left: they bound tasks, not memory or CPU, and the isolation report says
so (the default floor still refuses to run without cgroup limits).
"""

from __future__ import annotations

import resource

from ashd.sandbox.limits import Limits


def plan(limits: Limits) -> dict[str, int]:
    """The rlimits for a sandbox, by name (pure); no task bound where ``pids`` is unset."""
    values = {"core": 0}
    if limits.pids:
        values["nproc"] = limits.pids
    return values


def apply(values: dict[str, int]) -> None:
    """Set them on this process (inherited across exec and the uid drop). Raises OSError."""
    names = {"nproc": resource.RLIMIT_NPROC, "core": resource.RLIMIT_CORE}
    for name, value in values.items():
        resource.setrlimit(names[name], (value, value))

"""Who used the cores and who waited for one, per benchmark path (``message_latency.py``).

The kernel keeps, per thread, the CPU time it ran and the time it spent runnable but not
running (``/proc/PID/task/TID/schedstat``: run-queue wait). Summed over a path's processes
before and after a block of messages, they say whether a path's CLI does more work or only
waits longer for a core. Linux only; needs read access to the processes' ``/proc`` entries.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil


class Sched:
    """CPU time and run-queue wait of each role's processes (every thread alive at the block's
    start and end), per message, by path."""

    def __init__(self) -> None:
        self._ns: dict[str, dict[str, list[int]]] = {}
        self._messages: dict[str, int] = {}

    @contextlib.contextmanager
    def count(self, path: str, roles: dict[str, list[int]], messages: int) -> Iterator[None]:
        before = {role: schedstat(pids) for role, pids in roles.items()}
        yield
        totals = self._ns.setdefault(path, {})
        for role, pids in roles.items():
            after = schedstat(pids)
            total = totals.setdefault(role, [0, 0])
            total[0] += after[0] - before[role][0]
            total[1] += after[1] - before[role][1]
        self._messages[path] = self._messages.get(path, 0) + messages

    def report(self) -> dict[str, dict[str, dict[str, float]]]:
        """{path: {role: {"cpu": ms, "runqueue_wait": ms}}}, per message."""
        return {path: {role: {"cpu": round(cpu / 1e6 / self._messages[path], 2),
                              "runqueue_wait": round(wait / 1e6 / self._messages[path], 2)}
                       for role, (cpu, wait) in roles.items()}
                for path, roles in self._ns.items()}


def schedstat(pids: list[int]) -> tuple[int, int]:
    """Summed (CPU ns, run-queue wait ns) of every thread of ``pids`` alive now."""
    cpu = wait = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:
                continue
            cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
    return cpu, wait


def ashd_roles(ashd: psutil.Process) -> dict[str, list[int]]:
    """ashd's process tree by role: ``ashd`` (the daemon, its model proxy thread included),
    ``cli`` (the sessions' CLIs), ``bridge`` (the first Python process above a CLI, above bwrap
    and setpriv) and ``other`` (bwrap, setpriv, the zygote); and ``client``: this process."""
    tree = ashd.children(recursive=True)
    clis = {p.pid for p in tree if _name(p) == "claude"}
    bridges = {bridge.pid for p in tree if p.pid in clis
               for bridge in [next((q for q in p.parents() if _name(q).startswith("python")), None)] if bridge}
    return {"client": [os.getpid()], "ashd": [ashd.pid], "bridge": sorted(bridges), "cli": sorted(clis),
            "other": [p.pid for p in tree if p.pid not in clis | bridges]}


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return ""


def pin(cli: list[int], rest: list[int]) -> None:
    """Every thread of ``cli`` on the last core, every thread of ``rest`` on the others (threads
    started later inherit their starter's cores)."""
    cores = sorted(os.sched_getaffinity(0))
    for pids, on in ((cli, {cores[-1]}), (rest, set(cores[:-1]))):
        for pid in pids:
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), on)

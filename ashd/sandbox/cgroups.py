"""Per-sandbox cgroups, created under ashd's own cgroup in each hierarchy.

Two modes, chosen once by :func:`detect`:

- ``v2``: the unified hierarchy with ``memory``, ``pids`` and ``cpu`` delegated to ashd's
  group (systemd ``Delegate=yes``). ashd moves itself into a ``daemon`` leaf so its group
  may enable controllers for ``ashd-sandboxes/<instance>/<id>``.
- ``v1``: one group per controller hierarchy (``memory``, ``cpu``, ``pids``). A cgroup2
  mount without those controllers, if present, still gives a tracking group whose
  ``cgroup.kill`` ends every process at once.

Every daemon's groups live under ``ashd-sandboxes/<instance>`` (the instance is the digest of
its data dir): several daemons may share one cgroup, and :func:`sweep` at start-up removes
only the groups of the daemon that calls it.

**CPU fairness between tenants.** Below the instance, each tenant has a level of its own,
``t-<digest of the tenant id>``, with the same CPU weight (v1 ``cpu.shares`` 1024, v2
``cpu.weight`` 100): under contention the kernel splits the CPU equally between tenants
first, then between a tenant's sandboxes, so one tenant's 64 CLIs share what another
tenant's one CLI gets (issue #18). A tenant level is made on its first sandbox and stays
(empty) while ashd runs (removing it could race a new sandbox of that tenant); the start-up
sweep removes it.

OOM kills are read from the cgroup (v1 ``memory.oom_control`` ``oom_kill``, v2
``memory.events`` ``oom_kill``). All methods block briefly on sysfs writes; thread-safe per
group (each sandbox has its own; a tenant's level is made under a lock).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
GROUP_NAME = "ashd-sandboxes"
TENANT_PREFIX = "t-"  # a tenant's level below the instance
TENANT_CPU_WEIGHT = {"v1": ("cpu.shares", "1024"), "v2": ("cpu.weight", "100")}  # the same for every tenant


_LEVELS_LOCK = threading.Lock()


def tenant_level(tenant_id: str) -> str:
    """The tenant's group name below the instance: a digest (any tenant id is a safe name)."""
    return TENANT_PREFIX + hashlib.sha256(tenant_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CgroupLayout:
    """Where each controller's sandbox groups go; ``mode`` is ``v1``, ``v2`` or ``none``."""

    mode: str
    parents: dict[str, Path]  # controller (or "unified" for v2 / v1 tracking) -> parent dir
    problem: str = ""  # why limits are unavailable, for the isolation report


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mnt, fstype, opts, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            out.append((fstype, mnt, set(opts.split(","))))
    return out


def _own_groups() -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> this process's group path."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(",") if ctrls else [""]:
            out[ctrl] = path
    return out


def detect(instance: str = "") -> CgroupLayout:
    """Find where sandbox groups can be created with limits; never raises.

    ``instance``: this daemon's own level under ``ashd-sandboxes`` (see :func:`sweep`).
    """
    group = f"{GROUP_NAME}/{instance}" if instance else GROUP_NAME
    try:
        mounts, own = _mounts(), _own_groups()
    except OSError as exc:
        return CgroupLayout("none", {}, f"cannot read cgroup mounts: {exc}")
    v2 = next((m for t, m, _ in mounts if t == "cgroup2"), None)
    if v2 is not None and "" in own:
        base = Path(v2) / own[""].lstrip("/")
        try:
            available = set((base / "cgroup.controllers").read_text().split())
        except OSError:
            available = set()
        if set(CONTROLLERS) <= available and os.access(base, os.W_OK):
            return CgroupLayout("v2", {"unified": base / group})
    parents: dict[str, Path] = {}
    for ctrl in CONTROLLERS:
        mnt = next((m for t, m, o in mounts if t == "cgroup" and ctrl in o), None)
        if mnt is None or ctrl not in own:
            return CgroupLayout("none", {}, f"no cgroup v1 '{ctrl}' hierarchy and no delegated cgroup v2")
        own_dir = Path(mnt) / own[ctrl].lstrip("/")
        if not os.access(own_dir, os.W_OK):
            return CgroupLayout("none", {}, f"cannot write {own_dir} (run ashd as root or delegate cgroups)")
        parent = own_dir / group
        parents[ctrl] = parent
    if v2 is not None and "" in own:
        parents["unified"] = Path(v2) / own[""].lstrip("/") / group  # tracking + cgroup.kill
    return CgroupLayout("v1", parents)


def prepare(layout: CgroupLayout) -> None:
    """Create the parent groups (and in v2, move ashd into a leaf). Raises OSError."""
    for parent in layout.parents.values():
        parent.mkdir(parents=True, exist_ok=True)
    if layout.mode == "v2":
        unified = layout.parents["unified"]
        base = next(p for p in (unified, *unified.parents) if p.name == GROUP_NAME).parent
        leaf = base / "daemon"
        leaf.mkdir(exist_ok=True)
        for pid in (base / "cgroup.procs").read_text().split():
            _write(leaf / "cgroup.procs", pid)
        enable = " ".join(f"+{c}" for c in CONTROLLERS)
        _write(base / "cgroup.subtree_control", enable)
        level = base
        for part in unified.relative_to(base).parts:
            level = level / part
            _write(level / "cgroup.subtree_control", enable)


def sweep(layout: CgroupLayout) -> int:
    """Kill every process left in this daemon's sandbox groups and remove the groups.

    Only the groups under this layout's instance level are touched: those are this daemon's
    alone (a neighbour daemon has its own level). Called at start-up, before any sandbox of
    this daemon starts. Returns how many groups were removed; blocks (v1 needs retries).
    """
    groups: set[tuple[str, str]] = set()  # (tenant level or "", sandbox group name)
    for parent in layout.parents.values():
        for child in _subdirs(parent):
            if child.name.startswith(TENANT_PREFIX):
                groups.update((child.name, group.name) for group in _subdirs(child))
            else:
                groups.add(("", child.name))  # a sandbox group of an older ashd (no tenant level)
    removed = 0
    for level, name in sorted(groups):
        group = SandboxCgroup(layout, name, level)
        left = group.pids()
        if left:
            log.warning("sandbox group %s still held %d process(es) from an earlier run; killing them", name, len(left))
        removed += group.remove()
    remove_tenant_levels(layout)
    return removed


def remove_tenant_levels(layout: CgroupLayout) -> None:
    """rmdir every empty tenant level of this daemon (at start-up after the sweep, and when
    ashd stops). A level still holding a sandbox group stays. Never raises."""
    for parent in layout.parents.values():
        for child in _subdirs(parent):
            if child.name.startswith(TENANT_PREFIX):
                try:
                    child.rmdir()
                except OSError as exc:
                    log.warning("tenant cgroup %s not removed: %s", child, exc)


def _subdirs(parent: Path) -> list[Path]:
    try:
        return [child for child in parent.iterdir() if child.is_dir()]
    except OSError:
        return []


class SandboxCgroup:
    """The groups of one sandbox. ``procs_files`` are what the CLI wrapper joins."""

    def __init__(self, layout: CgroupLayout, name: str, level: str = "") -> None:
        """``level``: the tenant's level (:func:`tenant_level`) the group goes under; "": none."""
        self.layout = layout
        self.dirs = {key: parent / level / name for key, parent in layout.parents.items()}

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def create(self, memory_mb: int, cpus: float | None, pids: int) -> None:
        """mkdir and write the limits; ``cpus`` None: no CPU quota yet (a start's boost, until
        :meth:`limit_cpu`). Raises OSError (the caller removes what was made)."""
        for key, d in self.dirs.items():
            self._tenant_level(key, d.parent)
            d.mkdir(exist_ok=True)
        if self.layout.mode == "v2":
            d = self.dirs["unified"]
            _write(d / "memory.max", str(memory_mb << 20))
            _write(d / "memory.swap.max", "0", missing_ok=True)
            _write(d / "memory.oom.group", "1")
            _write(d / "pids.max", str(pids))
        else:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory_mb << 20))
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.dirs["pids"] / "pids.max", str(pids))
        self.limit_cpu(cpus)

    def limit_cpu(self, cpus: float | None) -> None:
        """Set the CPU quota to ``cpus`` CPUs (None: none, the host's CPUs), with a burst of one
        period's quota. Raises OSError.

        The burst (``cpu.max.burst``, v1 ``cpu.cfs_burst_us``; Linux 5.14 and later, skipped
        where missing) lets a sandbox spend in one period the quota it left unused before, up
        to one period's worth. A CLI's turn is bursty and many-threaded (node's main thread
        beside its garbage collector and I/O threads): without it, a turn that used more than
        ``cpus`` for a few milliseconds was stopped for the rest of the 100 ms period (a sandbox
        answering warm messages back to back on a two-core host: about one period in thirty,
        ~12 ms each). The bound over time is unchanged: a sandbox gets ``cpus`` on average, at
        most twice that in any one period."""
        quota = max(1000, int(cpus * CPU_PERIOD_US)) if cpus is not None else None
        if self.layout.mode == "v2":
            directory, limit, burst = self.dirs["unified"], "cpu.max", "cpu.max.burst"
            value = f"{quota or 'max'} {CPU_PERIOD_US}"
        else:
            directory, limit, burst = self.dirs["cpu"], "cpu.cfs_quota_us", "cpu.cfs_burst_us"
            value = str(quota or -1)
        _write(directory / burst, "0", missing_ok=True)  # a burst may not exceed the quota: lowered first
        _write(directory / limit, value)
        if quota is not None:
            _write(directory / burst, str(quota), missing_ok=True)

    def _tenant_level(self, key: str, level: Path) -> None:
        """Make the tenant's level (once) with the same CPU weight as every tenant's; in v2
        it hands the controllers down to its sandbox groups."""
        if level in self.layout.parents.values():
            return
        with _LEVELS_LOCK:  # a second sandbox of the tenant waits until the level is complete
            if level.exists():
                return
            level.mkdir()
            if self.layout.mode == "v2":
                _write(level / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
            if key == ("unified" if self.layout.mode == "v2" else "cpu"):
                name, weight = TENANT_CPU_WEIGHT[self.layout.mode]
                _write(level / name, weight)

    @property
    def memory_dir(self) -> Path:
        return self.dirs["unified" if self.layout.mode == "v2" else "memory"]

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this group (0 if unknown)."""
        name = "memory.events" if self.layout.mode == "v2" else "memory.oom_control"
        try:
            for line in (self.memory_dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def memory_peak_bytes(self) -> int:
        name = "memory.peak" if self.layout.mode == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((self.memory_dir / name).read_text())
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            try:
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(out)

    def kill_all(self) -> None:
        """SIGKILL every process of the sandbox (cgroup.kill where available). Never raises."""
        kill_file = self.dirs.get("unified", Path("/nonexistent")) / "cgroup.kill"
        if kill_file.exists():
            try:
                _write(kill_file, "1")
            except OSError as exc:
                log.debug("cgroup.kill failed: %s", exc)
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def remove(self, timeout_s: float = 3.0) -> bool:
        """Kill what is left and rmdir every group (retried: v1 pids lag ~1 s). Never raises."""
        self.kill_all()
        deadline = time.monotonic() + timeout_s
        pending = [d for d in self.dirs.values() if d.exists()]
        while pending:
            for d in list(pending):
                try:
                    d.rmdir()
                    pending.remove(d)
                except FileNotFoundError:
                    pending.remove(d)
                except OSError:
                    pass
            if not pending or time.monotonic() > deadline:
                break
            self.kill_all()
            time.sleep(0.02)  # polling with a deadline: the kernel gives no event for "group empty" in v1
        if pending:
            log.warning("cgroups not removed (still busy): %s", ", ".join(map(str, pending)))
        return not pending


def _write(path: Path, value: str, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except FileNotFoundError:
        if not missing_ok:
            raise

"""What isolation this host gives, in layers, and whether it meets the configured floor.

:func:`probe` looks at the host (blocks ~10-20 ms: it runs one tiny sandbox); :func:`assess`
is pure and turns the probe into the report served at ``/health`` and by ``ashctl doctor``.
The report holds no secrets and no paths under the data dir.

Layers: ``bwrap`` (namespaces, no nested userns, caps dropped), ``uid`` (a host uid per
sandbox), ``limits`` (memory/cpu/pids cgroups), ``netns`` (a private network namespace),
``proxy`` (the model credential stays outside), ``egress`` (allowlisted CONNECT proxy),
``quota`` (per-workspace disk image).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ashd.config import floor_layers
from ashd.sandbox import bwrap, cgroups, cliwrap

REMEDIES = {
    "bwrap": "install bubblewrap >= 0.8 (apt-get install bubblewrap) and allow unprivileged user namespaces "
             "(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)",
    "uid": "run ashd as root so it can drop each sandbox to its own uid (setpriv and nsenter, from util-linux)",
    "limits": "run ashd as root with cgroup v1 memory/cpu/pids hierarchies, or delegate memory, cpu and pids "
              "on cgroup v2 (systemd Delegate=yes)",
    "netns": "run ashd as root (it creates a network namespace per sandbox)",
    "proxy": "needs the netns layer (run ashd as root)",
    "egress": "needs the netns layer (run ashd as root)",
    "quota": "run ashd as root with e2fsprogs (mkfs.ext4) and loop devices (/dev/loop-control)",
}


@dataclass(frozen=True)
class Probe:
    """Raw facts about the host (see :func:`probe`)."""

    root: bool
    bwrap: str  # version string, "" if absent
    setpriv: bool
    userns_ok: bool
    userns_error: str
    cgroup: cgroups.CgroupLayout
    mkfs: bool
    loop: bool


@dataclass(frozen=True)
class Report:
    launcher: str
    layers: dict[str, dict[str, Any]]
    floor: tuple[str, ...]
    missing: tuple[str, ...] = field(default=())

    @property
    def meets_floor(self) -> bool:
        return not self.missing

    def refusal(self) -> str:
        """The operator-facing reason sessions are refused ("" if the floor is met)."""
        if not self.missing:
            return ""
        fixes = "; ".join(f"{layer}: {REMEDIES[layer]}" for layer in self.missing)
        return (f"sandbox isolation is below the configured floor ({', '.join(self.floor)}): missing "
                f"{', '.join(self.missing)}. To fix: {fixes}. Or lower sandbox.floor (ASH_SANDBOX_FLOOR, "
                "e.g. none) knowingly.")

    def to_json(self) -> dict[str, Any]:
        return {"launcher": self.launcher, "layers": self.layers, "floor": list(self.floor),
                "meetsFloor": self.meets_floor, "missing": list(self.missing)}


def probe(uid: int = 65534) -> Probe:
    """Look at the host: binaries, privileges, cgroups, and one trial sandbox as ``uid``."""
    root = os.geteuid() == 0
    version = ""
    if shutil.which(bwrap.BWRAP):
        run = subprocess.run([bwrap.BWRAP, "--version"], capture_output=True, text=True, timeout=10, check=False)
        version = run.stdout.strip().removeprefix("bubblewrap ")
    # The CLI wrapper execs nsenter (its network namespace) before setpriv: both or neither.
    setpriv = os.access(bwrap.SETPRIV, os.X_OK) and os.access(cliwrap.NSENTER, os.X_OK)
    userns_ok, userns_error = False, "bwrap is not installed" if not version else ""
    if version:
        prefix = bwrap.setpriv_argv(uid) if root and setpriv else []
        trial = [*prefix, bwrap.BWRAP, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net",
                          "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr",
                          "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                          "--symlink", "usr/bin", "/bin", "--", "/usr/bin/true"]
        run = subprocess.run(trial, capture_output=True, text=True, timeout=10, check=False)
        userns_ok, userns_error = run.returncode == 0, run.stderr.strip()[-300:]
    return Probe(root=root, bwrap=version, setpriv=setpriv, userns_ok=userns_ok, userns_error=userns_error,
                 cgroup=cgroups.detect(), mkfs=os.access("/usr/sbin/mkfs.ext4", os.X_OK),
                 loop=os.path.exists("/dev/loop-control"))


def assess(p: Probe, isolation: str, floor: str) -> Report:
    """Pure: which layers are active under ``isolation`` ("bwrap" or "none"), against ``floor``."""
    on = isolation == "bwrap"
    netns = on and p.root
    layers = {
        "bwrap": {"active": on and p.userns_ok and p.root and p.setpriv,
                  "detail": (f"bubblewrap {p.bwrap}: user/pid/ipc/uts/cgroup namespaces, nested userns disabled, "
                             "caps dropped, read-only minimal root" if p.userns_ok
                             else f"unavailable: {p.userns_error or 'bwrap missing'}")},
        "uid": {"active": on and p.root and p.setpriv, "detail": "a dedicated host uid per sandbox (setpriv)"},
        "limits": {"active": on and p.cgroup.mode in ("v1", "v2"),
                   "detail": (f"cgroup {p.cgroup.mode}: memory, cpu, pids; rlimits: tasks per uid, no core files"
                              if p.cgroup.mode != "none"
                              else f"{p.cgroup.problem}; only rlimits apply (tasks per uid, no core files): "
                                   "no memory or CPU limit"),
                   "cgroup": p.cgroup.mode, "rlimits": "nproc, core"},
        "netns": {"active": netns, "detail": "a private network namespace per sandbox (loopback only)"},
        "proxy": {"active": netns, "detail": "model credential injected outside; per-session token inside"},
        "egress": {"active": netns, "detail": "CONNECT proxy with a per-agent domain allowlist; default none"},
        "quota": {"active": on and p.root and p.mkfs and p.loop,
                  "detail": "loop-mounted ext4 image per workspace"},
    }
    if not on:
        for layer in layers.values():
            layer["active"], layer["detail"] = False, "off: sandbox.isolation is none"
    wanted = floor_layers(floor)
    missing = tuple(layer for layer in wanted if not layers[layer]["active"])
    return Report("bwrap" if on else "direct", layers, wanted, missing)

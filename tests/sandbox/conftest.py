"""Real sandboxes for component tests: a SandboxKit whose "CLI" is bash (needs root)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ashd.limit_fields import Limits
from ashd.sandbox import cgroups
from ashd.sandbox.kit import KitConfig, SandboxKit
from ashd.sandbox.uids import UidPool

if os.geteuid() != 0:
    pytest.skip("sandbox component tests need root (mounts, cgroups, setpriv)", allow_module_level=True)

DEFAULTS = Limits(memory_mb=256, cpus=1.0, pids=64, disk_mb=32, tmp_mb=8)
SECRET = "kit-test-secret-0b1c"


class Box:
    def __init__(self, kit: SandboxKit) -> None:
        self.kit = kit

    def run(self, script: str, timeout: float = 60, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        env = {"PASSED_OK": "visible", "NOT_PASSED": SECRET, **(extra_env or {})}
        argv = [sys.executable, "-m", "ashd.sandbox.cliwrap", str(self.kit.wrapper_plan_path), "-c", script]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="session")
def cgroup_layout() -> cgroups.CgroupLayout:
    layout = cgroups.detect()
    assert layout.mode != "none", layout.problem
    cgroups.prepare(layout)
    return layout


@pytest.fixture
def make_box(tmp_path: Path, cgroup_layout: cgroups.CgroupLayout) -> Iterator[Callable[..., Box]]:
    made: list[SandboxKit] = []
    mount_root = Path("/run/ashd-tests") / tmp_path.name[-24:]
    pool = UidPool(210_000, 1000)

    def make(name: str = "sb", limits: Limits | None = None, agent_dir: Path | None = None,
             boost_s: float = 0.0) -> Box:
        root = tmp_path / name
        (root / "workspace").mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        (root / "workspace" / "hello.txt").write_text("hi\n")
        kit = SandboxKit(KitConfig(mount_root, "/usr/bin/bash", DEFAULTS, boost_s), pool, cgroup_layout,
                         f"{tmp_path.name[-8:]}-{name}", root, agent_dir, limits or Limits())
        kit.setup({"PATH": "/usr/bin:/bin", "HOME": "/home/agent"}, ["PASSED_OK"])
        made.append(kit)
        return Box(kit)

    yield make
    for kit in made:
        kit.teardown()
    try:
        mount_root.rmdir()
    except OSError:
        pass

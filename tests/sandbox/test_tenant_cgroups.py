"""CPU fairness between tenants (issue #18): each tenant's sandbox groups sit under a level of
its own with the same CPU weight, in the real cgroup hierarchy of this host (v1 here; v2 where
delegated). Needs root, like every test in this folder."""

from __future__ import annotations

import uuid
from pathlib import Path

from ashd.sandbox import cgroups


def layout() -> cgroups.CgroupLayout:
    made = cgroups.detect(instance=f"test-{uuid.uuid4().hex[:8]}")
    assert made.mode in ("v1", "v2"), made.problem
    cgroups.prepare(made)
    return made


def cpu_dir(group: cgroups.SandboxCgroup) -> Path:
    return group.dirs["unified" if group.layout.mode == "v2" else "cpu"]


def test_each_tenant_gets_a_level_of_the_same_cpu_weight_and_its_sandboxes_go_below_it() -> None:
    made = layout()
    busy = [cgroups.SandboxCgroup(made, f"sb-{n}", cgroups.tenant_level("busy tenant/../x")) for n in range(3)]
    quiet = cgroups.SandboxCgroup(made, "sb-quiet", cgroups.tenant_level("quiet"))
    try:
        for group in [*busy, quiet]:
            group.create(memory_mb=64, cpus=1.0, pids=16)
        busy_level, quiet_level = cpu_dir(busy[0]).parent, cpu_dir(quiet).parent
        assert {cpu_dir(g).parent for g in busy} == {busy_level} and busy_level != quiet_level
        assert busy_level.parent == quiet_level.parent == made.parents["unified" if made.mode == "v2" else "cpu"]
        assert busy_level.name.startswith(cgroups.TENANT_PREFIX) and "/" not in busy_level.name[2:]
        weight_file, weight = cgroups.TENANT_CPU_WEIGHT[made.mode]
        assert (busy_level / weight_file).read_text().strip() == (quiet_level / weight_file).read_text().strip() \
            == weight
        # Removing a sandbox's groups leaves the tenant's level (other sandboxes may join it).
        assert busy[0].remove() and not cpu_dir(busy[0]).exists() and busy_level.is_dir()
    finally:
        removed = cgroups.sweep(made)
    assert removed == 3  # the other two busy groups and the quiet one
    for parent in made.parents.values():
        assert list(parent.iterdir()) == [] or all(not p.is_dir() for p in parent.iterdir())
        parent.rmdir()


def test_the_sweep_also_removes_groups_of_an_older_ashd_without_tenant_levels() -> None:
    made = layout()
    flat = cgroups.SandboxCgroup(made, "sb-flat")
    flat.create(memory_mb=64, cpus=1.0, pids=16)
    assert cpu_dir(flat).parent == made.parents["unified" if made.mode == "v2" else "cpu"]
    assert cgroups.sweep(made) == 1 and not cpu_dir(flat).exists()
    for parent in made.parents.values():
        parent.rmdir()

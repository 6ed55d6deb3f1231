"""Start-up sweep helpers: loop devices backed by this daemon's images, run dirs, tool task limits."""

from __future__ import annotations

from pathlib import Path

from ashd.sandbox import cgroups, reaper, rlimits


def test_loops_backed_inside_only_the_given_roots(tmp_path: Path) -> None:
    for n, backing in enumerate(["/data/sandboxes/s1/disk.img", "/other/sandboxes/s2/disk.img",
                                 "/data/sandboxes/s3/disk.img (deleted)", "/data/sandboxes-x/disk.img"]):
        (tmp_path / f"loop{n}" / "loop").mkdir(parents=True)
        (tmp_path / f"loop{n}" / "loop" / "backing_file").write_text(backing + "\n")
    (tmp_path / "loop9").mkdir()  # not attached: no loop/ dir
    assert reaper.loops_backed_inside([Path("/data/sandboxes")], tmp_path) == ["/dev/loop0", "/dev/loop2"]


def test_run_dirs_are_removed_but_not_one_with_a_mount_inside(tmp_path: Path) -> None:
    import subprocess

    root = tmp_path / "run"
    (root / "s1" / "policy").mkdir(parents=True)
    (root / "s2" / "disk").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "s2" / "disk")], check=True)
    try:
        assert reaper.remove_run_dirs(root) == 1
        assert not (root / "s1").exists() and (root / "s2" / "disk").is_mount()
    finally:
        subprocess.run(["umount", "-l", str(root / "s2" / "disk")], check=False)


def test_a_layout_is_scoped_to_its_instance() -> None:
    mine, theirs = cgroups.detect(instance="aaaaaaaaaaaa"), cgroups.detect(instance="bbbbbbbbbbbb")
    assert mine.mode == theirs.mode != "none"
    for key, parent in mine.parents.items():
        assert parent.name == "aaaaaaaaaaaa" and parent.parent.name == cgroups.GROUP_NAME
        assert theirs.parents[key].parent == parent.parent


def test_tools_keep_a_reserve_for_the_cli() -> None:
    assert rlimits.tool_tasks(512) == 448 and rlimits.tool_tasks(128) == 96 and rlimits.tool_tasks(32) == 16
    script = rlimits.toolshell(512)
    assert script.startswith("#!/bin/bash\n") and "ulimit -u 448 " in script and 'exec /bin/bash -c "$1"' in script


def test_an_exec_command_gets_the_tools_task_limit_and_the_cli_its_own() -> None:
    plan = {"core": 0, "nproc": 512}
    assert rlimits.for_exec(plan) == {"core": 0, "nproc": 448} and plan == {"core": 0, "nproc": 512}
    assert rlimits.for_exec({"core": 0}) == {"core": 0}

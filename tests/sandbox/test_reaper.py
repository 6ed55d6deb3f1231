"""Stale sandbox mounts of this data dir are detached at start; others are left alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ashd.sandbox import reaper

MOUNTINFO = """\
22 1 0:21 / / rw - ext4 /dev/vda rw
90 22 7:0 / /data/sandboxes/s1/workspace rw - ext4 /dev/loop0 rw
91 90 7:0 /home /data/sandboxes/s1/workspace/deeper rw - ext4 /dev/loop0 rw
92 22 0:4 / /run/ashd/abc/s1/netns rw - nsfs nsfs rw
93 22 7:1 / /other/sandboxes/s2/workspace rw - ext4 /dev/loop1 rw
94 22 7:2 / /data/sandboxes-not-ours/x rw - ext4 /dev/loop2 rw
95 22 7:3 / /data/sandboxes/with\\040space rw - ext4 /dev/loop3 rw
"""


def test_only_mounts_inside_the_roots_deepest_first() -> None:
    points = reaper.mount_points(MOUNTINFO)
    assert "/data/sandboxes/with space" in points
    stale = reaper.stale_under(points, [Path("/data/sandboxes"), Path("/run/ashd/abc")])
    # a mount inside another goes first
    assert stale.index("/data/sandboxes/s1/workspace/deeper") < stale.index("/data/sandboxes/s1/workspace")
    assert set(stale) == {"/data/sandboxes/s1/workspace/deeper", "/data/sandboxes/s1/workspace",
                          "/run/ashd/abc/s1/netns", "/data/sandboxes/with space"}


def test_reap_detaches_a_real_leftover_mount(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "data" / "sandboxes" / "s1" / "workspace", tmp_path / "other" / "workspace"
    for target in (mine, theirs):
        target.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        assert reaper.reap([tmp_path / "data" / "sandboxes"]) == 1
        assert not mine.is_mount() and theirs.is_mount()
    finally:
        for target in (mine, theirs):
            if target.is_mount():
                subprocess.run(["umount", "-l", str(target)], check=False)

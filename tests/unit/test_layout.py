"""Layout.create: the bridge sockets' directory is private to ashd's user, and when a long
data dir sends it to a predictable name in /tmp, what another user put there first (a
symlink, their own directory) is refused, never followed or adopted."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from ashd.layout import Layout, LayoutError


def long_layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / ("d" * 90))
    assert layout.socket_dir_in_tmp
    return layout


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_short_data_dir_keeps_its_sockets_under_run() -> None:
    short = Path(tempfile.mkdtemp(prefix="l"))  # pytest's tmp_path is already too long
    try:
        layout = Layout(short / "data")
        layout.create()
        assert layout.socket_dir == short.resolve() / "data" / "run" and not layout.socket_dir_in_tmp
        assert mode(layout.socket_dir) == 0o700
        layout.release()
        assert layout.socket_dir.is_dir()  # <data>/run stays
    finally:
        shutil.rmtree(short)


def test_the_tmp_socket_dir_is_private_and_removed_when_empty(tmp_path: Path) -> None:
    layout = long_layout(tmp_path)
    try:
        layout.create()
        assert mode(layout.socket_dir) == 0o700 and os.lstat(layout.socket_dir).st_uid == os.geteuid()
        assert len(str(layout.socket_path("00000000-0000-0000-0000-000000000000")).encode()) <= 107
    finally:
        layout.release()
    assert not layout.socket_dir.exists()


def test_an_existing_own_socket_dir_is_made_private_again(tmp_path: Path) -> None:
    layout = long_layout(tmp_path)
    layout.socket_dir.mkdir()
    try:
        layout.socket_dir.chmod(0o777)
        layout.create()
        assert mode(layout.socket_dir) == 0o700
    finally:
        layout.release()


def test_a_symlink_planted_at_the_tmp_name_is_refused_and_not_followed(tmp_path: Path) -> None:
    layout = long_layout(tmp_path)
    target = tmp_path / "victim"
    target.mkdir()
    target.chmod(0o755)
    layout.socket_dir.symlink_to(target)
    try:
        with pytest.raises(LayoutError, match="not a directory ashd can use"):
            layout.create()
        assert mode(target) == 0o755  # a chmod through the link would have made it 0700
    finally:
        layout.socket_dir.unlink()


def test_a_directory_another_user_made_at_the_tmp_name_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another uid")  # CI and this machine run as root
    layout = long_layout(tmp_path)
    layout.socket_dir.mkdir()
    layout.socket_dir.chmod(0o777)
    os.chown(layout.socket_dir, 54321, 54321)
    try:
        with pytest.raises(LayoutError, match="belongs to uid 54321"):
            layout.create()
        assert mode(layout.socket_dir) == 0o777  # left as it was, not adopted
    finally:
        layout.socket_dir.rmdir()

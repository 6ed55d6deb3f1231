"""Where things live under the data directory.

    <data>/ash.db                         SQLite database (default store)
    <data>/initial-api-key                bootstrap key, mode 0600
    <data>/agents/<tenant>/<name>/        agent folders deployed by upload
    <data>/sandboxes/<id>/workspace/      the session's working copy of its agent
    <data>/sandboxes/<id>/home/           HOME and CLAUDE_CONFIG_DIR of the CLI
    <data>/sandboxes/<id>/sandbox.log     bridge + CLI stderr
    <data>/run/<id>.sock                  bridge sockets (or a short /tmp dir, see below)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

_SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, minus the NUL
_SOCKET_NAME_LEN = len("00000000-0000-0000-0000-000000000000.sock") + 1


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    @property
    def key_file(self) -> Path:
        return self.data_dir / "initial-api-key"

    def managed_agent_dir(self, tenant_id: str, name: str) -> Path:
        return self.data_dir / "agents" / tenant_id / name

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.data_dir / "sandboxes" / sandbox_id

    @property
    def socket_dir(self) -> Path:
        """``<data>/run``, unless that path is too long for a unix socket name."""
        run = self.data_dir.resolve() / "run"
        if len(str(run).encode()) + _SOCKET_NAME_LEN <= _SUN_PATH_MAX:
            return run
        digest = hashlib.sha256(str(run).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"ashd-{digest}"

    @property
    def socket_dir_in_tmp(self) -> bool:
        """Whether :attr:`socket_dir` is the short directory in /tmp, not ``<data>/run``."""
        return self.socket_dir.parent != self.data_dir.resolve()

    def socket_path(self, sandbox_id: str) -> Path:
        return self.socket_dir / f"{sandbox_id}.sock"

    def create(self) -> None:
        """Create the directories, private to ashd's user."""
        for path in (self.data_dir, self.data_dir / "agents", self.data_dir / "sandboxes"):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        private_dir(self.socket_dir)

    def release(self) -> None:
        """At shutdown: remove the /tmp socket directory if it is empty (``<data>/run`` stays)."""
        if self.socket_dir_in_tmp:
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()


class LayoutError(Exception):
    """A directory ashd needs is not one it can trust."""


def private_dir(path: Path) -> None:
    """``path`` as a directory only this user can use: created with mode 0700, or, if it is
    there already, opened without following a symlink and checked to be a directory this
    user owns, then set to 0700. The /tmp socket directory's name is predictable in a shared
    directory: another user could have made it first, or left a symlink there that a plain
    ``chmod`` would follow."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise LayoutError(f"{path} is not a directory ashd can use ({exc.strerror}): remove it, or give "
                          "ashd a shorter data_dir (then its sockets go under <data_dir>/run)") from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise LayoutError(f"{path} belongs to uid {owner}, not to ashd's user (uid {os.geteuid()}): remove "
                              "it, or give ashd a shorter data_dir (then its sockets go under <data_dir>/run)")
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)

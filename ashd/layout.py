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

import hashlib
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

    def socket_path(self, sandbox_id: str) -> Path:
        return self.socket_dir / f"{sandbox_id}.sock"

    def create(self) -> None:
        """Create the directories, private to ashd's user."""
        for path in (self.data_dir, self.data_dir / "agents", self.data_dir / "sandboxes", self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)

"""RunnerFolders: the folders of the sandboxes a runner hosts for its coordinators.

A launch's folder is prepared here: the stale folder of a session that ran on another runner
since this one last hosted it is discarded (once its teardown is over), a workspace new to
this runner is restored from the session's latest snapshot, the agent folder is copied in, and
the answer is the runner's own spec. Also here: the snapshot a coordinator asks for (nothing
is uploaded when the workspace's digest is the one this sandbox last saved) and the removal of
an ended session's folder.

Every method blocks (copies, the blob store, waiting for a teardown): worker threads only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ashd.config import ModelConfig
from ashd.errors import AshError, SandboxFailed, SnapshotError
from ashd.layout import Layout
from ashd.sandbox import discard, workspace
from ashd.sandbox.launch_order import LaunchOrder, RunnerPlaces, spec_of
from ashd.sandbox.launcher import Launcher, SandboxSpec
from ashd.snapshot.snapshots import Snapshotter, snapshot_key

log = logging.getLogger(__name__)

TEARDOWN_MARGIN_S = 10.0  # beyond the stop grace, how long a removal waits for a teardown


class RunnerFolders:
    def __init__(self, layout: Layout, launcher: Launcher, model: ModelConfig, cli_workspace: str | None,
                 snapshots: Snapshotter | None, digest: Callable[[Path], str | None], stop_grace_s: float) -> None:
        self._layout = layout
        self._launcher = launcher
        self._model = model
        self._cli_workspace = cli_workspace
        self.snapshots = snapshots  # None: this runner has no snapshot store
        self._digest = digest
        self._stop_grace_s = stop_grace_s

    def prepare(self, order: LaunchOrder, agent_dir: Path) -> SandboxSpec:
        """The runner's spec for ``order``, with the agent copied in if the workspace is new.
        Raises SandboxFailed."""
        root = self._layout.sandbox_dir(order.sandbox_id)
        if order.fresh and root.exists():
            self._discard_stale(order, root)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._restore(order, root / "workspace")
        try:
            workspace.prepare(agent_dir, root / "workspace")
        except (OSError, AshError) as exc:
            raise SandboxFailed(f"cannot copy agent {order.agent_key} into the workspace: {exc}") from exc
        places = RunnerPlaces(root, self._layout.socket_path(order.sandbox_id), agent_dir, self._model.base_url,
                              self._model.api_key.reveal(), self._model.auth_token.reveal(), self._cli_workspace)
        return spec_of(order, places)

    def save(self, spec: SandboxSpec, saved: str | None) -> tuple[dict[str, Any], str | None]:
        """The workspace into the blob store, unless its digest (ashd/snapshot/fingerprint.py,
        as standalone judges) is ``saved``, the one this sandbox last saved: then nothing is
        uploaded and the answer is ``{unchanged: true, key, ms}``. Returns the answer and the
        digest saved now (None: an untrustworthy digest, racy or too large; the next one saves)."""
        assert self.snapshots is not None
        started = time.perf_counter()
        digest = self._digest(spec.workspace)
        if digest is not None and digest == saved:
            return ({"unchanged": True, "key": snapshot_key(spec.tenant_id, spec.session_id),
                     "ms": (time.perf_counter() - started) * 1000}, digest)
        info = self.snapshots.save(spec.session_id, spec.tenant_id, spec.workspace)
        return dataclasses.asdict(info), digest

    def remove(self, sandbox_id: str) -> bool:
        """Once the launcher's teardown of the sandbox is over (bounded), its folder; False
        if the teardown did not end in time (the folder stays)."""
        if not self._settled(sandbox_id, self._stop_grace_s + TEARDOWN_MARGIN_S):
            log.warning("sandbox %s still tearing down; its folder stays", sandbox_id)
            return False
        return discard.remove_sandbox_dir(self._layout.sandbox_dir(sandbox_id))

    def _discard_stale(self, order: LaunchOrder, root: Path) -> None:
        """The session ran on another runner since this one last hosted it (a partition moved
        it away, say): the folder kept here holds older files and an older conversation than
        the snapshot and the order."""
        if not self._settled(order.sandbox_id):
            raise SandboxFailed(f"sandbox {order.sandbox_id}'s earlier teardown on this runner has not finished; retry")
        if not discard.remove_sandbox_dir(root):
            raise SandboxFailed(f"sandbox {order.sandbox_id}'s stale folder on this runner could not be removed")
        log.info("session %s: ran on another runner since this one hosted it; its stale sandbox folder here "
                 "discarded (files from the snapshot, conversation from the coordinator)", order.session_id)

    def _settled(self, sandbox_id: str, *timeout_s: float) -> bool:
        """Whether the launcher's teardown of the sandbox is over, waiting for it (``timeout_s``,
        else the launcher's own bound); a launcher without teardowns has none to wait for."""
        settled = getattr(self._launcher, "settled", None)
        return not callable(settled) or bool(settled(sandbox_id, *timeout_s))

    def _restore(self, order: LaunchOrder, target: Path) -> None:
        """A workspace new to this runner: the session's latest snapshot, if it has one
        (otherwise the agent folder is copied in)."""
        if self.snapshots is None or target.exists():
            return
        try:
            if self.snapshots.restore(order.session_id, order.tenant_id, target):
                log.info("session %s: workspace restored from its snapshot", order.session_id)
        except (SnapshotError, OSError, ValueError) as exc:
            log.error("session %s: snapshot not restored (%s); starting from the agent folder", order.session_id, exc)

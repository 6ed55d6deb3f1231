"""Where a session's files are: its live sandbox's workspace, else its snapshot.

Rules (documented in docs/api.md):

- **Live**: the session is ``active`` or ``paused`` and its sandbox is up (its row's state is
  not ``cold``; a disk-image workspace must be mounted) with ``<data>/sandboxes/<id>/workspace``. Reads and writes
  go there (source ``sandbox``). A paused session keeps its sandbox (Ash's pause), so it is
  live until the pool evicts it; eviction snapshots first, so nothing written is lost.
- The agent's read-only files (``.claude/``, ``.mcp.json``: bound over the workspace from
  the deployed agent, see ``ashd/files/agent_binds.py``) are shown as the agent sees them
  and cannot be changed through the API (``ashd/files/bound.py``); for a session that is
  not live, as its next sandbox will bind them (from the deployed agent).
- **On a coordinator** (``remote`` given: sandboxes run on runners) the live workspace is
  the runner's: every operation goes over the link to the runner named on the session
  (``ashd/sandbox/remote_files.py``), which serves it with the same code on its own disk. A
  session whose runner is not linked, or does not host its sandbox (lost, restarted, the
  sandbox evicted), is not live: reads come from the snapshot, writes are refused, as below.
- **Not live** (stopped, ended, errored, evicted, or never started here): reads come from
  the session's snapshot archive (source ``snapshot``), never extracted to disk. Writes are
  refused with 409: a stopped session's files live in its snapshot and local disk image,
  which ashd does not edit behind the session's back; resume the session first.

Every method blocks (store reads, blob store I/O).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ashd.errors import Conflict, NotFound
from ashd.files.agent_binds import PLAN_NAME, write_copies
from ashd.files.bound import BoundTree
from ashd.files.live import LiveFiles, LocalFiles, RemoteLookup, tree_at
from ashd.layout import Layout
from ashd.snapshot.snapshots import snapshot_key
from ashd.snapshot.store import BlobStore
from ashd.states import SandboxState, SessionStatus
from ashd.store import SessionRow, Store

_LIVE_STATUSES = frozenset({SessionStatus.ACTIVE.value, SessionStatus.PAUSED.value})
# WARMING too: the pool records WARM a moment after the session turns active.
_UP_STATES = frozenset({SandboxState.WARMING.value, SandboxState.WARM.value, SandboxState.RUNNING.value,
                        SandboxState.WAITING.value})


class SessionFiles:
    """Finds a session's workspace; thread-safe (holds no mutable state)."""

    def __init__(self, store: Store, layout: Layout, blobs: BlobStore, tmp_dir: Path,
                 remote: RemoteLookup | None = None) -> None:
        """``remote``: on a coordinator, how to reach a runner's workspace of a sandbox."""
        self.store, self.layout, self.blobs, self.tmp_dir = store, layout, blobs, tmp_dir
        self.remote = remote

    def live_tree(self, row: SessionRow) -> LiveFiles | None:
        """The live workspace of the session, or None if it has no running sandbox."""
        if row.status not in _LIVE_STATUSES:
            return None
        sandbox_id = row.sandbox_id or row.id
        sandbox = self.store.get_sandbox(sandbox_id)
        if sandbox is None or sandbox.state not in _UP_STATES:
            return None
        if self.remote is not None:  # a coordinator: the workspace is on the session's runner
            return self.remote(row.runner_id, sandbox_id) if row.runner_id else None
        tree = tree_at(self.layout.sandbox_dir(sandbox_id))
        return LocalFiles(tree) if tree is not None else None

    def require_live(self, row: SessionRow) -> LiveFiles:
        """The live workspace; raises Conflict (409) naming what to do when there is none."""
        tree = self.live_tree(row)
        if tree is None:
            raise Conflict(
                f"Session {row.id} is {row.status} and has no running sandbox, so its files cannot be "
                "changed; resume it (POST /api/sessions/:id/resume) first"
            )
        return tree

    def fetch_snapshot(self, row: SessionRow) -> Path:
        """The session's snapshot archive, copied to a temporary file the caller removes.

        Raises NotFound when the session has no snapshot (no workspace anywhere).
        """
        path = self.temp_file(".tar.gz")
        try:
            if not self.blobs.get(snapshot_key(row.tenant_id, row.id), path):
                raise NotFound(f"Session {row.id} has no workspace: no running sandbox and no snapshot")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def snapshot_overlay(self, row: SessionRow) -> tuple[BoundTree, Path] | None:
        """What a sandbox of this not-live session gets bound (the deployed agent's read-only
        files), for the snapshot view: copies in a private temporary dir, returned with the
        dir (the caller removes it). None when its sandbox ran without binds (no plan)."""
        if not (self.layout.sandbox_dir(row.sandbox_id or row.id) / PLAN_NAME).exists():
            return None
        agent = self.store.get_agent(row.tenant_id, row.agent_name)
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = Path(tempfile.mkdtemp(prefix="binds-", dir=self.tmp_dir))
        try:
            binds = write_copies(Path(agent.path) if agent is not None else None, tmp / "copies")
            (tmp / "empty").mkdir()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return BoundTree(tmp / "empty", binds), tmp

    def temp_file(self, suffix: str) -> Path:
        """A fresh private temporary file (the caller removes it)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="files-", suffix=suffix, dir=self.tmp_dir)
        os.close(fd)
        return Path(name)

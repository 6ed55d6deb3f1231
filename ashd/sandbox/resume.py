"""Cold resume of a conversation: the stored transcript back into the CLI's config dir.

The bridge mirrors every transcript line into ashd's database (SDK session store). Whenever a
session's sandbox starts without the CLI's own transcript file — a new data dir, another
machine, a lost sandbox dir, a workspace restored from a snapshot, a workspace image that
survived while the CLI's config dir did not — ashd writes the stored lines back to where the
CLI keeps them (``<config>/projects/<project key>/<session id>.jsonl``, subagents beside it)
before the bridge starts, and the bridge resumes the session from that file.

The launcher runs :class:`TranscriptRestore` once the sandbox's HOME is in place (under the
isolating launcher that is after its workspace image is mounted: the transcript lives on the
image). Blocking; runs on the sandbox actor's thread.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from claude_agent_sdk import project_key_for_directory

log = logging.getLogger(__name__)


class TranscriptSource(Protocol):
    """Where stored transcript lines come from: the store, or what a runner was sent
    (``ashd/sandbox/launch_order.py``)."""

    def load_transcript(self, tenant_id: str, session_id: str, subpath: str = "") -> list[str]: ...

    def transcript_subpaths(self, tenant_id: str, session_id: str) -> list[str]: ...


@dataclass(frozen=True)
class TranscriptRestore:
    """What a sandbox's start restores when the CLI has no transcript of its session."""

    store: TranscriptSource
    tenant_id: str
    session_id: str
    parent_id: str | None  # a fork's parent: its conversation, until the fork has its own
    cli_cwd: str  # the workspace as the CLI sees it (decides the project key)

    def __call__(self, config_dir: Path, home: Path) -> str | None:
        """Restore into ``config_dir`` unless the CLI already has the transcript there;
        nothing is written outside ``home`` (see :func:`materialize`).

        Returns the parent session id when the fork must start from its parent's
        conversation (it has none of its own yet), else None. Raises StoreError, OSError.
        """
        if materialize(self.store, self.tenant_id, self.session_id, config_dir, self.cli_cwd, home):
            return None
        if has_local_transcript(config_dir, self.session_id) or not self.parent_id:
            return None
        parent = self.parent_id
        if has_local_transcript(config_dir, parent) or materialize(self.store, self.tenant_id, parent, config_dir,
                                                                   self.cli_cwd, home):
            return parent
        return None


def has_local_transcript(config_dir: Path, session_id: str) -> bool:
    return any((config_dir / "projects").glob(f"*/{session_id}.jsonl"))


def materialize(store: TranscriptSource, tenant_id: str, session_id: str, config_dir: Path, cli_cwd: str,
                home: Path | None = None) -> int:
    """Write the stored transcript unless the CLI already has one. Returns lines written.

    ``cli_cwd`` is the working directory as the CLI sees it (it decides the project key).
    ``home`` (default: the config dir's parent) bounds every write: the config dir may be the
    agent's to edit, so a path that a symlink leads out of ``home`` is never written (logged,
    skipped). No agent process may run meanwhile (the launcher restores before the CLI starts).
    """
    if has_local_transcript(config_dir, session_id):
        return 0
    main = store.load_transcript(tenant_id, session_id)
    if not main:
        return 0
    bound = (home or config_dir.parent).resolve()
    project = config_dir / "projects" / project_key_for_directory(cli_cwd)
    if not _write_jsonl(project / f"{session_id}.jsonl", main, bound):
        return 0
    written = len(main)
    for subpath in store.transcript_subpaths(tenant_id, session_id):
        target = (project / session_id / f"{subpath}.jsonl").resolve()
        if not target.is_relative_to(project.resolve()):
            log.error("session %s: ignoring transcript subpath %r outside its project dir", session_id, subpath)
            continue
        lines = store.load_transcript(tenant_id, session_id, subpath)
        if _write_jsonl(target, lines, bound):
            written += len(lines)
    log.info("session %s: restored %d transcript lines from the database", session_id, written)
    return written


def _write_jsonl(path: Path, entries: list[str], bound: Path) -> bool:
    """Write ``path`` atomically if it (symlinks resolved) stays under ``bound``; False if not."""
    if not path.parent.resolve().is_relative_to(bound):
        log.error("not restoring transcript %s: a symlink leads it outside %s", path, bound)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # never write through a link left at the temp name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(_type_first(entry) + "\n")
    tmp.replace(path)  # rename replaces a link at ``path`` itself, never its target
    return True


def _type_first(entry: str) -> str:
    # The CLI scans some lines by prefix ('{"type":"tag"'), so "type" leads, as on disk.
    value = json.loads(entry)
    if isinstance(value, dict) and "type" in value:
        value = {"type": value["type"], **{k: v for k, v in value.items() if k != "type"}}
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

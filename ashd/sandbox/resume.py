"""Cold resume of a conversation: the stored transcript back into the CLI's config dir.

The bridge mirrors every transcript line into ashd's database (SDK session store). When a
session's sandbox starts without the CLI's own transcript file — a new data dir, another
machine, a lost sandbox dir — ashd writes the stored lines back to where the CLI keeps
them (``<config>/projects/<project key>/<session id>.jsonl``, subagents beside it) before
the bridge starts, and the bridge resumes the session from that file. Blocking; runs on
the session actor's thread.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from claude_agent_sdk import project_key_for_directory

from ashd.store import Store

log = logging.getLogger(__name__)


def has_local_transcript(config_dir: Path, session_id: str) -> bool:
    return any((config_dir / "projects").glob(f"*/{session_id}.jsonl"))


def materialize(store: Store, tenant_id: str, session_id: str, config_dir: Path, cli_cwd: str) -> int:
    """Write the stored transcript unless the CLI already has one. Returns lines written.

    ``cli_cwd`` is the working directory as the CLI sees it (it decides the project key).
    """
    if has_local_transcript(config_dir, session_id):
        return 0
    main = store.load_transcript(tenant_id, session_id)
    if not main:
        return 0
    project = config_dir / "projects" / project_key_for_directory(cli_cwd)
    _write_jsonl(project / f"{session_id}.jsonl", main)
    written = len(main)
    for subpath in store.transcript_subpaths(tenant_id, session_id):
        target = (project / session_id / f"{subpath}.jsonl").resolve()
        if not target.is_relative_to(project.resolve()):
            log.error("session %s: ignoring transcript subpath %r outside its project dir", session_id, subpath)
            continue
        lines = store.load_transcript(tenant_id, session_id, subpath)
        _write_jsonl(target, lines)
        written += len(lines)
    log.info("session %s: restored %d transcript lines from the database", session_id, written)
    return written


def _write_jsonl(path: Path, entries: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(_type_first(entry) + "\n")
    tmp.replace(path)


def _type_first(entry: str) -> str:
    # The CLI scans some lines by prefix ('{"type":"tag"'), so "type" leads, as on disk.
    value = json.loads(entry)
    if isinstance(value, dict) and "type" in value:
        value = {"type": value["type"], **{k: v for k, v in value.items() if k != "type"}}
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

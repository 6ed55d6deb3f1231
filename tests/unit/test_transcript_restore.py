"""TranscriptRestore (ashd/sandbox/resume.py): the stored conversation back into the CLI's config
dir whenever the CLI has none, and never a write outside HOME (the agent may edit its config dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claude_agent_sdk import project_key_for_directory

from ashd.sandbox.resume import TranscriptRestore
from ashd.states import SessionStatus
from ashd.store import Store

CWD = "/workspace"
LINES = [json.dumps({"uuid": "u1", "type": "user", "message": "remember kappa-7"})]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    for sid in ("parent", "child"):
        store.create_session(tenant_id="default", session_id=sid, agent_name="a",
                             status=SessionStatus.ACTIVE.value, sandbox_id=sid)
    store.append_transcript("default", "parent", "", LINES)
    return store


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text("{}")  # a config dir that survived, without transcripts
    return home


def test_restored_into_an_existing_config_dir_without_a_transcript(store: Store, tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert TranscriptRestore(store, "default", "parent", None, CWD)(home / ".claude", home) is None
    restored = home / ".claude" / "projects" / project_key_for_directory(CWD) / "parent.jsonl"
    assert "kappa-7" in restored.read_text()
    restored.write_text("local wins\n")  # the CLI's own file is never overwritten
    TranscriptRestore(store, "default", "parent", None, CWD)(home / ".claude", home)
    assert restored.read_text() == "local wins\n"


def test_a_fork_without_its_own_conversation_starts_from_its_parents(store: Store, tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert TranscriptRestore(store, "default", "child", "parent", CWD)(home / ".claude", home) == "parent"
    assert list((home / ".claude" / "projects").glob("*/parent.jsonl"))


def test_a_symlink_never_leads_a_write_outside_home(store: Store, tmp_path: Path) -> None:
    home, outside = _home(tmp_path), tmp_path / "outside"
    outside.mkdir()
    (home / ".claude" / "projects").symlink_to(outside)  # planted by the agent on its image
    assert TranscriptRestore(store, "default", "parent", None, CWD)(home / ".claude", home) is None
    assert not list(outside.rglob("*"))
    project = tmp_path / "home2" / ".claude" / "projects" / project_key_for_directory(CWD)
    project.mkdir(parents=True)
    (project / "parent.tmp").symlink_to(outside / "victim")  # a link at the temporary name
    TranscriptRestore(store, "default", "parent", None, CWD)(tmp_path / "home2" / ".claude", tmp_path / "home2")
    assert not (outside / "victim").exists() and "kappa-7" in (project / "parent.jsonl").read_text()

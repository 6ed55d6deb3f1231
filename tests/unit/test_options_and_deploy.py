from __future__ import annotations

import base64
import os
from pathlib import Path, PurePosixPath

import pytest

from ashd import deploy
from ashd.errors import BadRequest
from ashd.files import agent_path
from ashd.files.agent_path import PathRules
from ashd.options import MessageOptions, SessionOptions, check_agent_name
from ashd.sandbox.env import sandbox_env
from ashd.user_env import validate_user_env


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 256, None, 5])
def test_bad_agent_names(name: object) -> None:
    with pytest.raises(BadRequest):
        check_agent_name(name)


def test_session_options_round_trip_and_refusals() -> None:
    opts = SessionOptions.from_request({"agent": "a", "model": "m", "permissionMode": "permissionsByAgent",
                                        "allowedTools": ["Bash"], "extraEnv": {"FOO": "1"}})
    assert opts.permission_mode == "default"
    assert SessionOptions.from_json(opts.to_json()) == opts
    assert SessionOptions.from_request(opts.to_request()) == opts  # the inverse, for patch-merging
    with pytest.raises(BadRequest, match="permissionMode"):
        SessionOptions.from_request({"permissionMode": "yolo"})


def test_message_options() -> None:
    assert MessageOptions.from_request({"content": "hi"}).content == "hi"
    blocks = [{"type": "text", "text": "x"}]
    assert MessageOptions.from_request({"content": blocks}).content == blocks
    for bad in ({"content": ""}, {"content": [{"type": "video"}]}, {"content": "x", "includePartialMessages": "yes"},
                {"content": "x", "maxTurns": 0}):
        with pytest.raises(BadRequest):
            MessageOptions.from_request(bad)


def test_env_allowlist_and_reserved_names() -> None:
    for name in ("PATH", "ANTHROPIC_API_KEY", "LD_PRELOAD", "CLAUDE_CONFIG_DIR", "ASH_X", "PYTHONPATH"):
        with pytest.raises(BadRequest, match="reserved"):
            validate_user_env({name: "x"}, "extraEnv")
    os.environ["ASHD_UNIT_PLANTED"] = "leak"
    env = sandbox_env(home="/h", model_base_url="http://m", model_key="k", model_auth_token="", user_env={"FOO": "1"})
    assert "ASHD_UNIT_PLANTED" not in env and env["FOO"] == "1" and env["HOME"] == "/h"
    assert env["CLAUDE_CONFIG_DIR"] == "/h/.claude"


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "", "a\\b", "dir/"])
def test_uploaded_paths_must_stay_inside(path: str) -> None:
    with pytest.raises(BadRequest):
        deploy.parse_files([{"path": path, "content": b64(b"x")}])


def test_write_agent_folder_replaces_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "agents" / "a"
    files = deploy.parse_files([{"path": "CLAUDE.md", "content": b64(b"# a")},
                                {"path": "sub/old.txt", "content": b64(b"old")}])
    deploy.write_agent_folder(target, files, None, "a")
    assert (target / "sub" / "old.txt").read_text() == "old"
    deploy.write_agent_folder(target, deploy.parse_files([{"path": "new.txt", "content": b64(b"n")}]), "prompt!", "a")
    assert not (target / "sub").exists()  # no stale files after a redeploy
    assert (target / "CLAUDE.md").read_text() == "prompt!"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a"]  # no staging leftovers


def test_resolve_agent_path(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "CLAUDE.md").write_text("x")
    assert agent_path.resolve(PathRules(), str(tmp_path / "ok"), True) == (tmp_path / "ok").resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadRequest, match=r"CLAUDE\.md"):
        agent_path.resolve(PathRules(), str(tmp_path / "empty"), True)
    assert deploy._safe_relative("./a/b", "f") == PurePosixPath("a/b")


@pytest.mark.parametrize("key", ["model", "systemPrompt"])
def test_a_nul_character_is_a_400_naming_the_field_not_a_database_error(key: str) -> None:
    with pytest.raises(BadRequest, match=f"{key} must not contain NUL"):
        SessionOptions.from_request({key: "claude\x00x"})

"""BoundTree: the deployed agent's read-only copies shown over a workspace's placeholders."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from ashd.errors import BadRequest, NotFound
from ashd.files import bundle
from ashd.files.agent_binds import AGENT_BINDS, bound_sources, write_copies
from ashd.files.bound import BoundTree, ReadOnlyPath
from ashd.sandbox import bwrap


@pytest.fixture
def tree(tmp_path: Path) -> BoundTree:
    ws = tmp_path / "workspace"
    (ws / ".claude").mkdir(parents=True)  # bwrap's placeholders: an empty dir, an empty file
    (ws / ".mcp.json").write_bytes(b"")
    (ws / "a.txt").write_text("alpha")
    (ws / "z").mkdir()
    (ws / "z" / ".mcp.json").write_text("nested, not bound")
    policy = tmp_path / "policy"
    (policy / "claude" / "skills").mkdir(parents=True)
    (policy / "claude" / "settings.json").write_text("{}\n")
    (policy / "mcp.json").write_text('{"mcpServers": {}}\n')
    return BoundTree(ws, {".claude": policy / "claude", ".mcp.json": policy / "mcp.json"})


def test_listing_and_reads_show_the_bound_copies_in_order(tree: BoundTree) -> None:
    files = tree.list_files(lambda name: False)
    assert [(f.path, f.size) for f in files] == [
        (".claude/settings.json", 3), (".mcp.json", 19), ("a.txt", 5), ("z/.mcp.json", 17)]
    f, st = tree.open_file((".mcp.json",))
    with f:
        assert f.read() == b'{"mcpServers": {}}\n' and st.st_size == 19
    f, _ = tree.open_file((".claude", "settings.json"))
    with f:
        assert f.read() == b"{}\n"
    with pytest.raises(BadRequest, match="directory"):
        tree.open_file((".claude",))
    with pytest.raises(NotFound):
        tree.open_file((".mcp.json", "x"))
    with pytest.raises(NotFound):
        tree.open_file((".claude", "missing.json"))
    assert [f.path for f in tree.list_files(lambda name: name.startswith("."))] == ["a.txt"]


def test_bound_paths_are_read_only(tree: BoundTree) -> None:
    for change in (lambda: tree.write((".mcp.json",), b"{}"),
                   lambda: tree.write((".claude", "new.json"), b"{}"),
                   lambda: tree.delete((".claude", "settings.json")),
                   lambda: tree.make_dirs((".claude", "skills", "x")),
                   lambda: tree.symlink((".mcp.json",), "a.txt")):
        with pytest.raises(ReadOnlyPath, match="redeploy"):
            change()
    assert tree.write(("z", ".mcp.json"), b"nested is a normal file") == 23
    assert (tree.root / ".mcp.json").read_bytes() == b""


def test_bundle_carries_the_copies_and_applying_it_leaves_them(tree: BoundTree, tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    bundle.write_bundle(tree, out, 1 << 20)
    with tarfile.open(out) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    assert members[".mcp.json"] == b'{"mcpServers": {}}\n' and members[".claude/settings.json"] == b"{}\n"
    assert members["a.txt"] == b"alpha"
    assert bundle.extract_bundle(out, tree, 1 << 20) == 3  # a.txt, z/, z/.mcp.json: not the bound ones
    assert (tree.root / ".mcp.json").read_bytes() == b""  # the placeholder under the bind is untouched


def test_sources_come_from_the_plan_and_must_have_their_type(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    (policy / "claude").mkdir(parents=True)
    (policy / "mcp.json").write_text("{}")
    plan = tmp_path / "sandbox-plan.json"
    mounts = {"claude_dir": str(policy / "claude"), "mcp_json": str(policy / "mcp.json")}
    plan.write_text(json.dumps({"mounts": mounts}))
    assert bound_sources(plan) == {".claude": policy / "claude", ".mcp.json": policy / "mcp.json"}
    plan.write_text(json.dumps({"mounts": {"claude_dir": str(policy / "mcp.json"), "mcp_json": "relative"}}))
    assert bound_sources(plan) == {}
    assert bound_sources(tmp_path / "no-plan.json") == {}


def test_the_table_is_what_bwrap_binds_read_only_over_the_workspace() -> None:
    mounts = bwrap.Mounts("/cli", "/ws", "/home", "/claude", "/mcp", 1024, claude_md="/claude.md")
    argv = bwrap.bwrap_argv(mounts, bwrap.Fds(3, 4, 5, 6, 7), [])
    over_workspace = {argv[i + 2]: argv[i + 1] for i, arg in enumerate(argv)
                      if arg == "--ro-bind" and argv[i + 2].startswith(bwrap.INSIDE_WORKSPACE + "/")}
    assert over_workspace == {f"{bwrap.INSIDE_WORKSPACE}/{b.name}": getattr(mounts, b.mount) for b in AGENT_BINDS}


def test_copies_are_the_agents_own_or_the_defaults(tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    (agent / ".claude" / "skills" / "s").mkdir(parents=True)
    (agent / ".claude" / "skills" / "s" / "SKILL.md").write_text("skill")
    (agent / ".mcp.json").symlink_to("/etc/passwd")  # never followed: the default instead
    copies = write_copies(agent, tmp_path / "copies")
    assert copies[".mcp.json"].read_text() == '{"mcpServers": {}}\n'
    assert (copies[".claude"] / "settings.json").read_text() == "{}\n"  # added when missing
    assert (copies[".claude"] / "skills" / "s" / "SKILL.md").read_text() == "skill"
    (agent / ".mcp.json").unlink()
    (agent / ".mcp.json").write_text('{"mcpServers": {"x": {}}}')
    assert write_copies(agent, tmp_path / "again")[".mcp.json"].read_text() == '{"mcpServers": {"x": {}}}'
    assert sorted(write_copies(None, tmp_path / "none")) == [b.name for b in AGENT_BINDS]

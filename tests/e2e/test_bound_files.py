"""Issue #9.7: the files API shows the agent's read-only files as the agent sees them.

bwrap binds copies of the deployed agent's ``.claude/`` and ``.mcp.json`` read-only over the
workspace (defaults when the agent has none); on the host the workspace holds empty
placeholders there. Listing, raw and JSON reads and the bundle must all show the bound
copies, with their real sizes, and must agree with a ``cat`` inside the sandbox.
"""

from __future__ import annotations

import base64
import io
import tarfile

import httpx
import pytest

from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

MCP = b'{"mcpServers": {"none": {"type": "stdio", "command": "true"}}}\n'
SETTINGS = b'{"permissions": {"allow": ["Bash(ls:*)"]}}\n'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def deploy(c: httpx.Client, name: str, files: dict[str, bytes]) -> str:
    resp = c.post("/api/agents", json={"name": name, "files": [
        {"path": path, "content": b64(data)} for path, data in files.items()]})
    assert resp.status_code == 201, resp.text
    resp = c.post("/api/sessions", json={"agent": name})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session"]["id"])


def inside(c: httpx.Client, sid: str, path: str) -> bytes:
    """The file's bytes as the agent sees them (base64 through exec: exact bytes)."""
    resp = c.post(f"/api/sessions/{sid}/exec", json={"command": f"base64 -w0 {path}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["exitCode"] == 0, body
    return base64.b64decode(body["stdout"])


def bundle_members(c: httpx.Client, sid: str) -> dict[str, bytes]:
    resp = c.get(f"/api/sessions/{sid}/workspace")
    assert resp.status_code == 200, resp.text
    out = {}
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        for member in tar:
            if member.isreg():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name] = f.read()
    return out


def check_agrees(c: httpx.Client, sid: str, expected: dict[str, bytes], source: str = "sandbox") -> None:
    answer = c.get(f"/api/sessions/{sid}/files").json()
    assert answer["source"] == source
    listing = {f["path"]: f["size"] for f in answer["files"]}
    bundle = bundle_members(c, sid)
    for path, data in expected.items():
        if source == "sandbox":
            assert inside(c, sid, path) == data, path  # what the agent sees
        assert listing.get(path) == len(data), (path, listing)
        raw = c.get(f"/api/sessions/{sid}/files/{path}")
        assert raw.status_code == 200 and raw.content == data, (path, raw.content)
        as_json = c.get(f"/api/sessions/{sid}/files/{path}", params={"format": "json"}).json()
        assert (as_json["content"], as_json["size"]) == (data.decode(), len(data)), as_json
        assert bundle.get(path) == data, (path, sorted(bundle))


def test_bound_agent_files_agree_everywhere(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=120) as c:
        # An agent without its own .claude/ or .mcp.json: the sandbox's defaults are bound.
        bare = deploy(c, "bare", {"CLAUDE.md": b"# bare\n", "notes.txt": b"plain file\n"})
        check_agrees(c, bare, {".mcp.json": b'{"mcpServers": {}}\n', ".claude/settings.json": b"{}\n",
                               "notes.txt": b"plain file\n"})

        # An agent with its own: those, as deployed.
        own = deploy(c, "own", {"CLAUDE.md": b"# own\n", ".mcp.json": MCP, ".claude/settings.json": SETTINGS,
                                "notes.txt": b"plain\n"})
        check_agrees(c, own, {".mcp.json": MCP, ".claude/settings.json": SETTINGS, "notes.txt": b"plain\n"})

        # Read-only for the API as for the agent; a bundle that carries them still applies.
        up = c.post(f"/api/sessions/{own}/files", json={"files": [
            {"path": ".mcp.json", "content": b64(b"{}")}, {"path": "new.txt", "content": b64(b"new")}]})
        assert up.status_code == 200, up.text
        written = {f["path"]: f for f in up.json()["files"]}
        assert not written[".mcp.json"]["written"] and "read-only" in written[".mcp.json"]["error"]
        assert written["new.txt"]["written"]
        gone = c.delete(f"/api/sessions/{own}/files/.claude/settings.json")
        assert gone.status_code == 400 and "redeploy" in gone.json()["error"]
        bundle = c.get(f"/api/sessions/{own}/workspace").content
        assert c.post(f"/api/sessions/{own}/workspace", json={"bundle": b64(bundle)}).status_code == 200
        check_agrees(c, own, {".mcp.json": MCP, ".claude/settings.json": SETTINGS, "new.txt": b"new"})

        # Stopped: the snapshot view shows what the next sandbox binds, not the placeholders.
        for sid in (bare, own):
            assert c.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
        check_agrees(c, bare, {".mcp.json": b'{"mcpServers": {}}\n', ".claude/settings.json": b"{}\n",
                               "notes.txt": b"plain file\n"}, source="snapshot")
        check_agrees(c, own, {".mcp.json": MCP, ".claude/settings.json": SETTINGS, "new.txt": b"new"},
                     source="snapshot")
        assert c.post(f"/api/sessions/{bare}/resume").json()["session"]["status"] == "active"
        check_agrees(c, bare, {".mcp.json": b'{"mcpServers": {}}\n', ".claude/settings.json": b"{}\n"})

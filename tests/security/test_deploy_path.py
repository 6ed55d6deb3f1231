"""Issue #15 item 2: deploy by server path is the operator's, and contained.

A tenant's key may not register folders on the server (403 pointing at deploy by upload)
unless the operator configured ``agents.path_roots``, and then only inside them; nobody
(the operator included) may register a folder inside ashd's data dir or /run; no symlink is
ever followed, at deploy or when the agent folder is read later.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import AshdProcess, sse_events

pytestmark = pytest.mark.e2e

SECRET = "internal-secret-for-deploy-path-tests-41d2"
HOST_SECRET = "host-secret-a5e7c1"


def _agent(folder: Path, text: str = "# agent\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "CLAUDE.md").write_text(text)
    return folder


def _mint(daemon: AshdProcess, tenant: str, scopes: list[str]) -> httpx.Client:
    resp = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": tenant, "scopes": scopes},
                      headers={"Authorization": f"Bearer {SECRET}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.json()["scopes"] == scopes
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {resp.json()['key']}"},
                        timeout=60)


def _operator(daemon: AshdProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)


def _deploy(c: httpx.Client, name: str, path: str | Path) -> httpx.Response:
    return c.post("/api/agents", json={"name": name, "path": str(path)})


def _refused(resp: httpx.Response, status: int = 403) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return str(resp.json()["error"])


def _upload(c: httpx.Client, name: str) -> httpx.Response:
    content = base64.b64encode(b"# uploaded\n").decode()
    return c.post("/api/agents", json={"name": name, "files": [{"path": "CLAUDE.md", "content": content}]})


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A folder with a CLAUDE.md under /run (made by this test, removed after)."""
    path = Path("/run") / f"ashd-test-deploy-{uuid.uuid4().hex[:8]}"
    _agent(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_tenant_key_cannot_register_server_folders(start_ashd: Callable[..., AshdProcess],
                                                     database_url: str | None, tmp_path: Path) -> None:
    daemon = start_ashd(database_url, ASH_INTERNAL_SECRET=SECRET)
    a_folder = _agent(tmp_path / "tenant-a-agent", f"A's agent {HOST_SECRET}\n")
    with _operator(daemon) as op, _mint(daemon, "tenant-b", ["write"]) as b, \
            _mint(daemon, "tenant-b", ["admin"]) as b_admin:
        assert _deploy(op, "a-agent", a_folder).status_code == 201  # the bootstrap key is the operator's
        assert _upload(op, "a-upload").status_code == 201
        managed = daemon.data_dir / "agents" / "default" / "a-upload"
        for path in ("/etc", a_folder, managed):
            error = _refused(_deploy(b, "stolen", path))
            assert "files" in error and "upload" in error, error
            assert _refused(_deploy(b_admin, "stolen", path))
        assert b.get("/api/agents/stolen/files/CLAUDE.md").status_code == 404
        assert _upload(b, "b-agent").status_code == 201  # what the hint says works

        # Only the operator grants deploy-path: not a tenant's own admin key, not by default.
        refused = b_admin.post("/api/api-keys", json={"scopes": ["write", "deploy-path"]})
        assert "operator" in _refused(refused)
        assert b_admin.post("/api/api-keys", json={}).json()["scopes"] == ["admin"]
        # A key the operator marked may (and still never inside the data dir).
        with _mint(daemon, "tenant-c", ["write", "deploy-path"]) as marked:
            assert _deploy(marked, "c-agent", a_folder).status_code == 201
            _refused(_deploy(marked, "c-managed", managed))


def test_the_operator_cannot_deploy_ashds_own_places(ashd_sqlite: AshdProcess, run_dir: Path,
                                                     tmp_path: Path) -> None:
    daemon = ashd_sqlite
    with _operator(daemon) as op:
        assert _upload(op, "up").status_code == 201
        managed = daemon.data_dir / "agents" / "default" / "up"
        (daemon.data_dir / "CLAUDE.md").write_text("# the data dir itself\n")
        for path in (managed, daemon.data_dir, run_dir, f"{daemon.data_dir}/./agents/default/up"):
            assert "never deployed from there" in _refused(_deploy(op, "own", path))
        # Around the lexical check: a link elsewhere that points in is not followed.
        (tmp_path / "link-in").symlink_to(managed)
        assert "symlink" in _refused(_deploy(op, "own", tmp_path / "link-in"), 400)
        # Relative paths were relative to the data dir; they are refused now.
        assert "absolute" in _refused(_deploy(op, "own", "agents/default/up"), 400)
        assert op.get("/api/agents/own").status_code == 404


def _session(c: httpx.Client, agent: str) -> str:
    resp = c.post("/api/sessions", json={"agent": agent})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session"]["id"])


def _bash(c: httpx.Client, sid: str, command: str) -> str:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[bash: {command}]]"},
                  timeout=180) as resp:
        events = sse_events(resp.read().decode())
    results: list[Any] = [d["content"] for n, d in events if n == "tool_result"]
    assert results, events
    return str(results[-1])


def test_a_symlink_planted_by_the_agent_does_not_open_the_host(start_ashd: Callable[..., AshdProcess],
                                                               tmp_path: Path) -> None:
    daemon = start_ashd(None, ASH_INTERNAL_SECRET=SECRET)
    a_folder = _agent(tmp_path / "tenant-a-agent", f"A's agent {HOST_SECRET}\n")
    with _operator(daemon) as op, _mint(daemon, "tenant-b", ["write"]) as b:
        assert _deploy(op, "a-agent", a_folder).status_code == 201
        assert _upload(b, "b-agent").status_code == 201
        sid = _session(b, "b-agent")
        assert "made" in _bash(b, sid, "ln -s / rootlink && echo made")
        workspace = daemon.data_dir / "sandboxes" / sid / "workspace"
        assert (workspace / "rootlink").is_symlink()
        for target in ("etc", str(a_folder).lstrip("/"), str(daemon.data_dir).lstrip("/")):
            path = workspace / "rootlink" / target
            for client in (b, op):
                _refused(_deploy(client, "via-link", path))
        _refused(_deploy(b, "via-link", workspace))
        assert b.get("/api/agents/via-link").status_code == 404 and op.get("/api/agents/via-link").status_code == 404


def test_path_roots_let_tenants_deploy_inside_them_only(start_ashd: Callable[..., AshdProcess],
                                                        tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    inside = _agent(roots / "team-b" / "agent", "# inside the root\n")
    outside = _agent(tmp_path / "outside" / "agent", f"# outside {HOST_SECRET}\n")
    (roots / "team-b" / "link-out").symlink_to(outside)
    (roots / "dir-link").symlink_to(outside.parent)
    daemon = start_ashd(None, ASH_INTERNAL_SECRET=SECRET, ASH_AGENT_PATH_ROOTS=str(roots))
    with _mint(daemon, "tenant-b", ["write"]) as b:
        assert _deploy(b, "inside", inside).status_code == 201
        assert b.get("/api/agents/inside/files/CLAUDE.md").json()["content"] == "# inside the root\n"
        assert "symlink" in _refused(_deploy(b, "out", roots / "team-b" / "link-out"), 400)
        assert "symlink" in _refused(_deploy(b, "out", roots / "dir-link" / "agent"), 400)
        assert "'..'" in _refused(_deploy(b, "out", f"{roots}/team-b/../../outside/agent"), 400)
        assert "path_roots" in _refused(_deploy(b, "out", outside))
        assert b.get("/api/agents/out").status_code == 404


def test_agent_file_reads_never_follow_a_symlink_out_of_the_folder(ashd_sqlite: AshdProcess,
                                                                   tmp_path: Path) -> None:
    base = tmp_path / "served"
    folder = _agent(base / "current" / "agent", "# deployed\n")
    (folder / "pw").symlink_to("/etc/passwd")
    (folder / "etc").symlink_to("/etc")
    elsewhere = _agent(tmp_path / "elsewhere" / "agent", f"# {HOST_SECRET}\n")
    (tmp_path / "elsewhere" / "agent" / "notes.txt").write_text(HOST_SECRET)
    with _operator(ashd_sqlite) as op:
        assert _deploy(op, "linked", folder).status_code == 201
        for name in ("pw", "etc/passwd"):
            resp = op.get(f"/api/agents/linked/files/{name}", params={"format": "raw"})
            assert resp.status_code == 400 and "root:" not in resp.text, resp.text
        listed = [f["path"] for f in op.get("/api/agents/linked/files").json()["files"]]
        assert listed == ["CLAUDE.md"]

        # The folder is referenced in place: swap a component of its path for a link.
        os.rename(base / "current", base / "previous")
        (base / "current").symlink_to(elsewhere.parent)
        for route in ("/api/agents/linked/files/CLAUDE.md", "/api/agents/linked/files/notes.txt",
                      "/api/agents/linked/files"):
            resp = op.get(route)
            assert resp.status_code == 400 and HOST_SECRET not in resp.text, (route, resp.text)
        resp = op.post("/api/sessions", json={"agent": "linked"})
        assert resp.status_code >= 400 and HOST_SECRET not in resp.text, resp.text

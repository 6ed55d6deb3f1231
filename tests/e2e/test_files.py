"""Session files, workspace bundles, agent files and attachments against a real ashd.

Escape attempts (``..``, absolute paths, symlinks the agent planted in its workspace) are
refused and nothing outside the workspace is read or written.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def start_session(c: httpx.Client, agent: str = "hello") -> str:
    resp = c.post("/api/agents", json={"name": agent, "files": [
        {"path": "CLAUDE.md", "content": b64(b"# files test\n")}]})
    assert resp.status_code == 201, resp.text
    resp = c.post("/api/sessions", json={"agent": agent})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session"]["id"])


def workspace(daemon: AshdProcess, sid: str) -> Path:
    return daemon.data_dir / "sandboxes" / sid / "workspace"


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_session_files_round_trip_and_escapes(ashd: AshdProcess, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as c:
        sid = start_session(c)
        ws = workspace(ashd, sid)

        resp = c.post(f"/api/sessions/{sid}/files", json={"targetPath": "src", "files": [
            {"path": "a.txt", "content": b64(b"alpha")},
            {"path": "deep/b.bin", "content": b64(b"\x00\x01\x02"), "mimeType": "application/octet-stream"}]})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"files": [{"path": "a.txt", "written": True, "size": 5},
                                         {"path": "deep/b.bin", "written": True, "size": 3}]}
        # Files ashd writes into a live sandbox belong to the sandbox's user.
        owner = ws.stat()
        uid_file = ws.parent / "uid"  # written when the sandbox runs as its own uid
        if uid_file.exists():
            assert owner.st_uid == int(uid_file.read_text()) != os.geteuid()
        for p in (ws / "src", ws / "src" / "a.txt", ws / "src" / "deep" / "b.bin"):
            assert (p.lstat().st_uid, p.lstat().st_gid) == (owner.st_uid, owner.st_gid), p

        listing = c.get(f"/api/sessions/{sid}/files").json()
        assert listing["source"] == "sandbox"
        paths = {f["path"]: f for f in listing["files"]}
        assert {"CLAUDE.md", "src/a.txt", "src/deep/b.bin"} <= set(paths)
        assert paths["src/a.txt"]["size"] == 5 and paths["src/a.txt"]["modifiedAt"].endswith("Z")

        raw = c.get(f"/api/sessions/{sid}/files/src/deep/b.bin")
        assert raw.status_code == 200 and raw.content == b"\x00\x01\x02"
        assert raw.headers["x-ash-source"] == "sandbox"
        assert raw.headers["x-content-type-options"] == "nosniff"
        assert raw.headers["content-disposition"].startswith('attachment; filename="b.bin"')
        as_json = c.get(f"/api/sessions/{sid}/files/src/a.txt", params={"format": "json"}).json()
        assert as_json == {"path": "src/a.txt", "content": "alpha", "size": 5, "source": "sandbox"}

        # The agent plants symlinks out of its workspace; none is followed.
        (ws / "file-link").symlink_to(outside / "secret")
        (ws / "dir-link").symlink_to(outside)
        (ws / "etc").symlink_to("/etc")
        for path in ("file-link", "dir-link/secret", "etc/passwd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "%2Fetc%2Fpasswd", "src/%2e%2e/%2e%2e/x"):
            resp = c.get(f"/api/sessions/{sid}/files/{path}")
            assert resp.status_code == 400, (path, resp.text)
            assert resp.json()["statusCode"] == 400 and "secret" not in resp.text and "root:" not in resp.text
            assert c.delete(f"/api/sessions/{sid}/files/{path}").status_code == 400, path
        for bad in ("../x", "/etc/ashd-pwned", "a/../../x", "a\x00b", ""):
            resp = c.post(f"/api/sessions/{sid}/files", json={"files": [{"path": bad, "content": b64(b"x")}]})
            assert resp.status_code == 400, (bad, resp.text)
        resp = c.post(f"/api/sessions/{sid}/files", json={"targetPath": "../..", "files": [
            {"path": "x", "content": b64(b"x")}]})
        assert resp.status_code == 400
        # Through a planted link: refused per file (Ash's shape), nothing written outside.
        resp = c.post(f"/api/sessions/{sid}/files", json={"files": [
            {"path": "dir-link/secret", "content": b64(b"pwned")}, {"path": "file-link", "content": b64(b"pwned")},
            {"path": "etc/ashd-pwned", "content": b64(b"pwned")}]})
        assert resp.status_code == 200
        assert [f["written"] for f in resp.json()["files"]] == [False, False, False]
        assert all("symlink" in f["error"] for f in resp.json()["files"])
        assert (outside / "secret").read_text() == "host secret" and sorted(os.listdir(outside)) == ["secret"]
        assert not Path("/etc/ashd-pwned").exists()

        # Bundle out: no symlink is dereferenced; in: a bundle reaching out is refused whole.
        bundle = c.get(f"/api/sessions/{sid}/workspace")
        assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/gzip"
        with tarfile.open(fileobj=io.BytesIO(bundle.content)) as tar:
            names = set(tar.getnames())
        assert "src/a.txt" in names and not {"file-link", "dir-link", "etc"} & names
        assert not any(n.startswith(("etc/", "dir-link/")) for n in names)
        evil = c.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(tar_gz(
            {"fine.txt": b"x", "dir-link/secret": b"pwned"}))})
        assert evil.status_code == 400, evil.text
        assert not (ws / "fine.txt").exists() and (outside / "secret").read_text() == "host secret"
        for bad in ("", b64(b"not gzip"), b64(b"\x1f\x8bnot really")):
            assert c.post(f"/api/sessions/{sid}/workspace", json={"bundle": bad}).status_code == 400
        good = c.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(tar_gz({"restored/r.txt": b"back"}))})
        assert good.status_code == 200 and "message" in good.json()
        assert (ws / "restored" / "r.txt").read_bytes() == b"back"
        assert (ws / "restored" / "r.txt").stat().st_uid == owner.st_uid

        assert c.delete(f"/api/sessions/{sid}/files/src/a.txt").json() == {"path": "src/a.txt", "deleted": True}
        assert c.get(f"/api/sessions/{sid}/files/src/a.txt").status_code == 404
        assert c.delete(f"/api/sessions/{sid}/files/src/a.txt").status_code == 404
        assert (ws / "file-link").is_symlink()  # the planted link was never removed or replaced


def test_stopped_session_reads_its_snapshot_and_refuses_writes(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = start_session(c)
        c.post(f"/api/sessions/{sid}/files", json={"files": [{"path": "kept.txt", "content": b64(b"kept")}]})
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
        listing = c.get(f"/api/sessions/{sid}/files").json()
        assert listing["source"] == "snapshot" and "kept.txt" in {f["path"] for f in listing["files"]}
        raw = c.get(f"/api/sessions/{sid}/files/kept.txt")
        assert raw.content == b"kept" and raw.headers["x-ash-source"] == "snapshot"
        bundle = c.get(f"/api/sessions/{sid}/workspace")
        assert bundle.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(bundle.content)) as tar:
            assert "kept.txt" in tar.getnames()
        for resp in (c.post(f"/api/sessions/{sid}/files", json={"files": [{"path": "n", "content": b64(b"x")}]}),
                     c.delete(f"/api/sessions/{sid}/files/kept.txt"),
                     c.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(tar_gz({"n": b"x"}))})):
            assert resp.status_code == 409 and "resume" in resp.json()["error"], resp.text
        assert c.get(f"/api/sessions/{sid}/files/missing.txt").status_code == 404
        # Another tenant's id, a bad id: 404 / 400.
        assert c.get("/api/sessions/00000000-0000-0000-0000-000000000000/files").status_code == 404
        assert c.get("/api/sessions/not-a-uuid/files").status_code == 400


def test_agent_files(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        assert c.post("/api/agents", json={"name": "up", "files": [
            {"path": "CLAUDE.md", "content": b64(b"# up\n")}]}).status_code == 201
        assert c.post("/api/agents", json={"name": "bypath", "path": str(HELLO_AGENT)}).status_code == 201
        resp = c.post("/api/agents/up/files", json={"files": [{"path": "skills/x.md", "content": b64(b"skill")}]})
        assert resp.status_code == 200 and resp.json() == {"written": 1}
        assert {f["path"] for f in c.get("/api/agents/up/files").json()["files"]} == {"CLAUDE.md", "skills/x.md"}
        assert c.get("/api/agents/up/files/skills/x.md").json() == {"path": "skills/x.md", "content": "skill",
                                                                      "size": 5}
        raw = c.get("/api/agents/up/files/skills/x.md", params={"format": "raw"})
        assert raw.content == b"skill" and raw.headers["x-content-type-options"] == "nosniff"
        for bad in ("../x", "/etc/passwd"):
            assert c.post("/api/agents/up/files", json={"files": [
                {"path": bad, "content": b64(b"x")}]}).status_code == 400
        assert c.get("/api/agents/up/files/%2e%2e/%2e%2e/%2e%2e/ash.db").status_code == 400
        assert c.delete("/api/agents/up/files/skills/x.md").json() == {"deleted": True}
        assert c.get("/api/agents/up/files/skills/x.md").status_code == 404
        # A server-path agent can be read, never changed.
        assert "CLAUDE.md" in {f["path"] for f in c.get("/api/agents/bypath/files").json()["files"]}
        resp = c.post("/api/agents/bypath/files", json={"files": [{"path": "n.md", "content": b64(b"x")}]})
        assert resp.status_code == 409 and "redeploy" in resp.json()["error"]
        assert c.delete("/api/agents/bypath/files/CLAUDE.md").status_code == 409
        assert (HELLO_AGENT / "CLAUDE.md").exists() and not (HELLO_AGENT / "n.md").exists()
        assert c.get("/api/agents/nope/files").status_code == 404


def test_attachments(start_ashd: object) -> None:
    daemon: AshdProcess = start_ashd(None, ASH_MAX_ATTACHMENT_SIZE="1000",  # type: ignore[operator]
                                     ASH_MAX_SESSION_ATTACHMENTS_SIZE="1500")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        sid = start_session(c)
        resp = c.post(f"/api/sessions/{sid}/attachments", json={
            "filename": "../../etc/re port.html", "content": b64(b"<b>hi</b>"), "mimeType": "text/html"})
        assert resp.status_code == 201, resp.text
        att = resp.json()["attachment"]
        assert att["filename"] == "re port.html" and att["size"] == 9 and att["sessionId"] == sid
        assert att["messageId"] is None and att["mimeType"] == "text/html"
        assert (workspace(daemon, sid) / "attachments" / "re port.html").read_bytes() == b"<b>hi</b>"
        stored = list((daemon.data_dir / "attachments").rglob("re port.html"))
        assert len(stored) == 1 and att["id"] in str(stored[0])

        got = c.get(f"/api/attachments/{att['id']}")
        assert got.content == b"<b>hi</b>" and got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"].startswith("attachment;")
        assert [a["id"] for a in c.get(f"/api/sessions/{sid}/attachments").json()["attachments"]] == [att["id"]]

        assert c.post(f"/api/sessions/{sid}/attachments", json={
            "filename": "big", "content": b64(b"x" * 1001)}).status_code == 413
        assert c.post(f"/api/sessions/{sid}/attachments", json={"filename": "e", "content": ""}).status_code == 400
        assert c.post(f"/api/sessions/{sid}/attachments", json={
            "filename": "m", "content": b64(b"x"), "messageId": "nope"}).status_code == 400
        assert c.get("/api/attachments/not-a-uuid").status_code == 400
        assert c.get("/api/attachments/00000000-0000-0000-0000-000000000000").status_code == 404

        # The session's attachments together: 9 + 900 bytes fit the 1500, 600 more do not, until one goes.
        second = c.post(f"/api/sessions/{sid}/attachments", json={"filename": "a", "content": b64(b"a" * 900)})
        assert second.status_code == 201, second.text
        over = c.post(f"/api/sessions/{sid}/attachments", json={"filename": "b", "content": b64(b"b" * 600)})
        assert over.status_code == 413 and "ASH_MAX_SESSION_ATTACHMENTS_SIZE" in over.json()["error"]
        assert "delete some first" in over.json()["error"]
        assert not list((daemon.data_dir / "attachments").rglob("b"))  # nor any bytes
        assert [a["filename"] for a in c.get(f"/api/sessions/{sid}/attachments").json()["attachments"]] == [
            "re port.html", "a"]  # the refused one left no row

        assert c.delete(f"/api/attachments/{att['id']}").status_code == 204
        assert c.get(f"/api/attachments/{att['id']}").status_code == 404
        assert not stored[0].exists()
        assert c.delete(f"/api/attachments/{second.json()['attachment']['id']}").status_code == 204
        assert c.post(f"/api/sessions/{sid}/attachments", json={
            "filename": "b", "content": b64(b"b" * 600)}).status_code == 201  # room again

        def post_900(i: int) -> int:
            with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as own:
                return own.post(f"/api/sessions/{sid}/attachments",
                                json={"filename": f"c{i}", "content": b64(b"c" * 900)}).status_code

        with ThreadPoolExecutor(4) as pool:  # room for one more: posts at once never pass on the same room
            assert sorted(pool.map(post_900, range(4))) == [201, 413, 413, 413]


def test_ash_sdk_session_files_and_workspace(ashd_sqlite: AshdProcess) -> None:
    """Ash's published Python client uses these routes without errors."""
    from ash_sdk.api.sessions import (
        get_api_sessions_id_files,
        get_api_sessions_id_workspace,
        post_api_sessions_id_files,
        post_api_sessions_id_workspace,
    )
    from ash_sdk.client import AuthenticatedClient
    from ash_sdk.models import (
        GetApiSessionsIdFilesResponse200,
        PostApiSessionsIdFilesBody,
        PostApiSessionsIdWorkspaceBody,
        PostApiSessionsIdWorkspaceResponse200,
    )

    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = start_session(c, "sdk")
    # The client's defaults (its stale spec documents no 200 for GET /workspace, so
    # raise_on_unexpected_status=True would reject Ash's own answer too).
    with AuthenticatedClient(base_url=ashd_sqlite.url, token=ashd_sqlite.key) as client:
        body = PostApiSessionsIdFilesBody.from_dict({"files": [{"path": "notes/n.txt", "content": b64(b"from sdk")}]})
        up = post_api_sessions_id_files.sync_detailed(sid, client=client, body=body)
        assert up.status_code == 200
        listed = get_api_sessions_id_files.sync(sid, client=client, include_hidden="false")
        assert isinstance(listed, GetApiSessionsIdFilesResponse200)
        assert "notes/n.txt" in {f.path for f in listed.files} and listed.source == "sandbox"
        http = client.get_httpx_client()
        assert http.get(f"/api/sessions/{sid}/files/notes/n.txt").content == b"from sdk"
        assert http.delete(f"/api/sessions/{sid}/files/notes/n.txt").json()["deleted"] is True

        down = get_api_sessions_id_workspace.sync_detailed(sid, client=client)
        assert down.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(down.content)) as tar:
            assert "CLAUDE.md" in tar.getnames()
        back = post_api_sessions_id_workspace.sync(sid, client=client, body=PostApiSessionsIdWorkspaceBody(
            bundle=b64(tar_gz({"from-bundle.txt": b"yes"}))))
        assert isinstance(back, PostApiSessionsIdWorkspaceResponse200) and back.message
        assert http.get(f"/api/sessions/{sid}/files/from-bundle.txt").content == b"yes"


def test_what_would_eat_the_stores_floor_is_a_507(start_ashd: object, tmp_path: Path) -> None:
    """A workspace bundle (written under <data>/tmp first), an attachment, a session's or an
    agent's files: what could take the data disk into the store's half of the reserve is refused
    with a 507 that says so, and writes nothing. (No sandbox, so the session itself needs no
    disk promise, and its files land on the data disk.)"""
    st = os.statvfs(tmp_path)
    reserve_mb = 2 * st.f_bavail * st.f_frsize // (1 << 20) + 1024  # its half is more than the disk has free
    daemon: AshdProcess = start_ashd(None, ASH_DISK_RESERVE_MB=str(reserve_mb),  # type: ignore[operator]
                                     ASH_SANDBOX_ISOLATION="none", ASH_SANDBOX_FLOOR="none")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        assert c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        created = c.post("/api/sessions", json={"agent": "hello"})  # a server-path agent: nothing written
        assert created.status_code == 201, created.text
        sid = created.json()["session"]["id"]
        for resp in (c.get(f"/api/sessions/{sid}/workspace"),
                     c.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(tar_gz({"n.txt": b"x"}))})):
            assert resp.status_code == 507, resp.text
            assert "too full to bundle" in resp.json()["error"] and resp.headers["Retry-After"] == "30"
        assert not (workspace(daemon, sid) / "n.txt").exists()
        assert not list((daemon.data_dir / "tmp").glob("files-*"))
        resp = c.post(f"/api/sessions/{sid}/attachments", json={"filename": "a", "content": b64(b"a")})
        assert resp.status_code == 507 and "too full to store this attachment" in resp.json()["error"]
        assert c.get(f"/api/sessions/{sid}/attachments").json()["attachments"] == []
        assert not list((daemon.data_dir / "attachments").rglob("a"))
        # Without a sandbox a session's files, and a deploy's, land on the data disk itself.
        resp = c.post(f"/api/sessions/{sid}/files", json={"files": [{"path": "f.txt", "content": b64(b"f")}]})
        assert resp.status_code == 507 and "too full to store these files" in resp.json()["error"]
        assert not (workspace(daemon, sid) / "f.txt").exists()
        resp = c.post("/api/agents", json={"name": "more", "files": [{"path": "CLAUDE.md", "content": b64(b"#")}]})
        assert resp.status_code == 507 and "this agent's files" in resp.json()["error"]
        assert c.get("/api/agents/more").status_code == 404
        assert c.get(f"/api/sessions/{sid}/files/CLAUDE.md").status_code == 200  # one by one still works

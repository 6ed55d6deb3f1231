"""Credentials (sealed at rest, the session's upstream key at the model proxy, never in the
sandbox), agent versions (the active prompt for new sessions) and PATCH /api/agents/:name,
against a real ashd, the real CLI and the scripted model."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.e2e.test_walking_skeleton import send, upload_body
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

MASTER = "test-master-credential-key-0b1c"
INTERNAL = "test-internal-secret-77ad"
DAEMON_KEY = "sk-real-upstream-key"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def keys_seen(model: ScriptedModel, marker: str) -> set[str | None]:
    """The x-api-key digests of the /v1/messages requests that carried ``marker``."""
    return {r.x_api_key_sha256 for r in model.requests()
            if r.path == "/v1/messages" and marker in json.dumps(r.body)}


def systems_seen(model: ScriptedModel, marker: str) -> list[str]:
    return [json.dumps(r.body.get("system")) for r in model.requests()
            if r.path == "/v1/messages" and marker in json.dumps(r.body.get("messages"))]


def other_tenant(daemon: AshdProcess, tenant: str = "tenant-b") -> httpx.Client:
    resp = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": tenant},
                      headers={"Authorization": f"Bearer {INTERNAL}"})
    assert resp.status_code == 201, resp.text
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {resp.json()['key']}"}, timeout=60)


@pytest.fixture
def keyed(start_ashd: Callable[..., AshdProcess], database_url: str | None) -> AshdProcess:
    return start_ashd(database_url, ASH_CREDENTIAL_KEY=MASTER, ASH_INTERNAL_SECRET=INTERNAL,
                      ASH_PREWARM_PER_AGENT="0")


def test_credentials_are_sealed_listed_without_secrets_and_tenant_scoped(keyed: AshdProcess) -> None:
    secret = f"sk-ant-{uuid.uuid4().hex}"
    with httpx.Client(base_url=keyed.url, headers=keyed.headers, timeout=60) as c, other_tenant(keyed) as b:
        for bad, field in [({"type": "gcp", "key": "x"}, "type"), ({"type": "anthropic"}, "key"),
                           ({"type": "anthropic", "key": "x", "label": 5}, "label"),
                           ({"type": "anthropic", "key": "x", "secret": 1}, "secret")]:
            resp = c.post("/api/credentials", json=bad)
            assert resp.status_code == 400 and field in resp.json()["error"], resp.text
        resp = c.post("/api/credentials", json={"type": "anthropic", "key": secret, "label": "prod"})
        assert resp.status_code == 201, resp.text
        cred = resp.json()["credential"]
        assert set(cred) == {"id", "type", "label", "active", "createdAt", "lastUsedAt"}
        assert cred["type"] == "anthropic" and cred["label"] == "prod" and cred["active"] is True
        assert cred["lastUsedAt"] is None and secret not in resp.text
        listed = c.get("/api/credentials")
        assert listed.status_code == 200 and listed.json()["credentials"] == [cred] and secret not in listed.text
        if keyed.env.get("ASH_DATABASE_URL") is None:  # SQLite: the secret is not in the file
            assert secret.encode() not in (keyed.data_dir / "ash.db").read_bytes()

        # Another tenant sees none of it and cannot delete it.
        assert b.get("/api/credentials").json() == {"credentials": []}
        assert b.delete(f"/api/credentials/{cred['id']}").status_code == 404
        # Credentials need the admin scope.
        read_key = c.post("/api/api-keys", json={"scopes": ["read"]}).json()["key"]
        assert httpx.get(f"{keyed.url}/api/credentials",
                         headers={"Authorization": f"Bearer {read_key}"}).status_code == 403

        assert c.delete(f"/api/credentials/{cred['id']}").status_code == 204
        assert c.delete(f"/api/credentials/{cred['id']}").status_code == 404
        assert c.delete("/api/credentials/not-a-uuid").status_code == 404
        assert c.get("/api/credentials").json() == {"credentials": []}


def test_without_a_credential_key_storing_is_refused_with_a_hint(ashd_sqlite: AshdProcess) -> None:
    resp = httpx.post(f"{ashd_sqlite.url}/api/credentials", headers=ashd_sqlite.headers,
                      json={"type": "anthropic", "key": "sk-ant-x"})
    assert resp.status_code == 409
    assert "ASH_CREDENTIAL_KEY" in resp.json()["error"]


def bridge_environ(daemon: AshdProcess, sid: str) -> bytes:
    for proc in daemon.descendants():
        if "ashd.bridge" in " ".join(proc.cmdline()) and sid in " ".join(proc.cmdline()):
            return Path(f"/proc/{proc.pid}/environ").read_bytes()
    raise AssertionError(f"no bridge process for session {sid}")


def test_a_session_credential_is_the_upstream_key_and_never_reaches_the_sandbox(
        start_ashd: Callable[..., AshdProcess], scripted_model: ScriptedModel) -> None:
    daemon = start_ashd(None, ASH_CREDENTIAL_KEY=MASTER, ASH_INTERNAL_SECRET=INTERNAL, ASH_PREWARM_PER_AGENT="0")
    secret = f"sk-ant-tenant-{uuid.uuid4().hex}"
    marker = uuid.uuid4().hex[:10]
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c, other_tenant(daemon) as b:
        assert c.post("/api/agents", json=upload_body("hello", HELLO_AGENT)).status_code == 201
        cred = c.post("/api/credentials", json={"type": "anthropic", "key": secret}).json()["credential"]
        openai = c.post("/api/credentials", json={"type": "openai", "key": "sk-openai"}).json()["credential"]
        foreign = b.post("/api/credentials", json={"type": "anthropic", "key": "sk-b"}).json()["credential"]
        for bad in ["nope", str(uuid.uuid4()), openai["id"], foreign["id"], 7]:
            resp = c.post("/api/sessions", json={"agent": "hello", "credentialId": bad})
            assert resp.status_code == 400 and "bad credential" in resp.json()["error"], (bad, resp.text)

        resp = c.post("/api/sessions", json={"agent": "hello", "credentialId": cred["id"]})
        assert resp.status_code == 201, resp.text
        sid = resp.json()["session"]["id"]
        plain = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]

        events = send(c, sid, f"[[bash: env; echo {marker}-env]]")
        out = next(d for n, d in events if n == "tool_result")["content"]
        assert f"{marker}-env" in out and secret not in out and "ANTHROPIC_API_KEY=ashd-sess-" in out
        assert secret.encode() not in bridge_environ(daemon, sid)
        assert keys_seen(scripted_model, f"{marker}-env") == {sha(secret)}
        send(c, plain, f"[[say: {marker}-plain]]")
        assert keys_seen(scripted_model, f"{marker}-plain") == {sha(DAEMON_KEY)}

        workspace = daemon.data_dir / "sandboxes" / sid
        assert not any(secret.encode() in p.read_bytes() for p in workspace.rglob("*")
                       if p.is_file() and not p.is_symlink() and p.stat().st_size < 10_000_000)
        used = c.get("/api/credentials").json()["credentials"]
        assert next(x for x in used if x["id"] == cred["id"])["lastUsedAt"] is not None

        # A cold resume (after a restart of ashd) keeps the session's credential.
        daemon.stop()
        again = daemon.restarted()
        try:
            resume_cold_then_lose_the_credential(again, c.headers, sid, cred["id"], openai["id"], secret,
                                                 marker, scripted_model)
        finally:
            again.stop()


def resume_cold_then_lose_the_credential(again: AshdProcess, headers: httpx.Headers, sid: str, cred: str,
                                     openai: str, secret: str, marker: str, scripted_model: ScriptedModel) -> None:
    with httpx.Client(base_url=again.url, headers=headers, timeout=120) as c2:
        assert c2.post(f"/api/sessions/{sid}/resume").status_code == 200
        send(c2, sid, f"[[say: {marker}-cold]]")
        assert keys_seen(scripted_model, f"{marker}-cold") == {sha(secret)}
        # PATCH config cannot swap it; a deleted credential cannot serve a new start.
        resp = c2.patch(f"/api/sessions/{sid}/config", json={"credentialId": openai})
        assert resp.status_code == 400
        assert c2.delete(f"/api/credentials/{cred}").status_code == 204
        assert c2.post(f"/api/sessions/{sid}/stop").status_code == 200
        resp = c2.post(f"/api/sessions/{sid}/resume")
        assert resp.status_code in (502, 503) and "credential" in resp.json()["error"], resp.text


def test_versions_crud_and_the_active_prompt_for_new_sessions(
        keyed: AshdProcess, scripted_model: ScriptedModel) -> None:
    marker = uuid.uuid4().hex[:10]
    prompt = f"You are version two {marker}."
    with httpx.Client(base_url=keyed.url, headers=keyed.headers, timeout=120) as c, other_tenant(keyed) as b:
        assert c.get("/api/agents/hello/versions").status_code == 404
        assert c.post("/api/agents", json=upload_body("hello", HELLO_AGENT)).status_code == 201
        assert c.get("/api/agents/hello/versions").json() == {"versions": []}
        old = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]

        resp = c.post("/api/agents/hello/versions", json={"systemPrompt": "v1 prompt", "knowledgeFiles": ["a.md"],
                                                          "releaseNotes": "first"})
        assert resp.status_code == 201, resp.text
        v1 = resp.json()["version"]
        assert v1["versionNumber"] == 1 and v1["name"] == "v1" and v1["isActive"] is False
        assert v1["knowledgeFiles"] == ["a.md"] and v1["agentName"] == "hello" and v1["createdBy"]
        v2 = c.post("/api/agents/hello/versions", json={"cloneFrom": 1, "name": "two"}).json()["version"]
        assert (v2["versionNumber"], v2["name"], v2["systemPrompt"], v2["releaseNotes"]) == (2, "two", "v1 prompt",
                                                                                           "first")
        for bad in [{"cloneFrom": 9}, {"cloneFrom": "x"}, {"knowledgeFiles": "a"}, {"color": 1}, {"name": ""}]:
            assert c.post("/api/agents/hello/versions", json=bad).status_code == 400, bad
        assert c.get(f"/api/agents/hello/versions/{v2['id']}").json()["version"]["versionNumber"] == 2
        assert c.get("/api/agents/hello/versions/abc").status_code == 400
        assert c.get("/api/agents/hello/versions/9").status_code == 404
        assert b.get("/api/agents/hello/versions/2").status_code == 404

        resp = c.patch("/api/agents/hello/versions/2", json={"systemPrompt": prompt, "releaseNotes": None})
        assert resp.status_code == 200 and resp.json()["version"]["systemPrompt"] == prompt
        assert resp.json()["version"]["releaseNotes"] is None
        assert c.patch("/api/agents/hello/versions/2", json={"isActive": True}).status_code == 400
        resp = c.post("/api/agents/hello/versions/2/activate")
        assert resp.json() == {"activated": True, "versionNumber": 2}
        listed = c.get("/api/agents/hello/versions").json()["versions"]
        assert [v["isActive"] for v in listed] == [False, True]
        assert c.delete("/api/agents/hello/versions/2").status_code == 409
        assert c.delete("/api/agents/hello/versions/1").status_code == 204

        # A new session gets the active prompt; an explicit systemPrompt wins; an older
        # session keeps CLAUDE.md.
        new = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        send(c, new, f"[[say: {marker}-new]]")
        assert all(prompt in s and "friendly assistant" not in s for s in systems_seen(scripted_model,
                                                                                       f"{marker}-new"))
        assert systems_seen(scripted_model, f"{marker}-new")
        own = c.post("/api/sessions", json={"agent": "hello", "systemPrompt": f"own {marker}"}).json()["session"]
        send(c, own["id"], f"[[say: {marker}-own]]")
        assert all(f"own {marker}" in s and prompt not in s for s in systems_seen(scripted_model, f"{marker}-own"))
        send(c, old, f"[[say: {marker}-old]]")
        assert all("friendly assistant" in s and prompt not in s
                   for s in systems_seen(scripted_model, f"{marker}-old"))

        # Deleting the agent deletes its versions.
        assert c.delete("/api/agents/hello").status_code == 200
        assert c.post("/api/agents", json=upload_body("hello", HELLO_AGENT)).status_code == 201
        assert c.get("/api/agents/hello/versions").json() == {"versions": []}


def test_patch_agent_env_and_config(keyed: AshdProcess) -> None:
    with httpx.Client(base_url=keyed.url, headers=keyed.headers, timeout=60) as c:
        body = {**upload_body("hello", HELLO_AGENT), "env": {"A": "1"}}
        assert c.post("/api/agents", json=body).status_code == 201
        c.patch("/api/agents/hello/config", json={"keep": True})
        resp = c.patch("/api/agents/hello", json={"env": {"B": "secret-value"}, "config": {"preWarmCount": 0}})
        assert resp.status_code == 200, resp.text
        agent = resp.json()["agent"]
        assert agent["env"] == {"B": "***"} and agent["version"] == 1 and "secret-value" not in resp.text
        assert c.get("/api/agents/hello/config").json()["config"] == {"keep": True, "preWarmCount": 0}
        for bad in [{"version": 3}, {"env": {"ANTHROPIC_API_KEY": "x"}}, {"env": {"A": 1}}, {"config": [1]},
                    {"config": {"preWarmCount": 99}}]:
            resp = c.patch("/api/agents/hello", json=bad)
            assert resp.status_code == 400, (bad, resp.text)
        assert c.patch("/api/agents/nope", json={"env": {}}).status_code == 404

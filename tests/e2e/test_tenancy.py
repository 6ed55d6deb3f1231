"""Tenancy and scopes on every route, driven by the app's route table.

Tenant A (the bootstrap key) owns an agent, a session, keys and whatever other objects the
routes of the table manage; tenant B's admin key (minted through /api/internal/api-keys)
must get 404 on every route naming one of A's objects, and A's objects must be unchanged
afterwards. A route of the table without a case here FAILS the test (add its case below).
A read key of A may GET but gets 403 on every method needing write or admin.
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import tornado.web

from ashd.http import scopes
from ashd.http.app import make_app
from ashd.http.context import AppContext
from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.store.pg import backend_database
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

SECRET = "internal-secret-for-tests-7c1f0e9d"
ORIGIN = "https://app.example"
A_AGENT = "tenancy-a-agent"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PUBLIC = {"/health", "/health/live", "/health/ready", "/openapi.json", "/docs", "/docs/static/{}"}


@dataclass(frozen=True)
class Route:
    pattern: str  # "/api/sessions/{}/stop"
    handler: type[tornado.web.RequestHandler]
    methods: tuple[str, ...]


def route_table() -> list[Route]:
    """Every route of the app with the methods its handler implements."""
    app = make_app(cast(AppContext, object()))
    out = []
    for rule in app.wildcard_router.rules:
        handler = rule.target
        pattern = rule.matcher.regex.pattern.removesuffix("$")  # type: ignore[attr-defined]
        pattern = re.sub(r"\([^)]*\)", "{}", pattern)
        assert isinstance(handler, type)
        methods = tuple(m for m in METHODS
                        if getattr(handler, m.lower()) is not getattr(tornado.web.RequestHandler, m.lower()))
        out.append(Route(pattern, handler, methods))
    return out


def _tar_gz() -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"from B\n"
        info = tarfile.TarInfo("b.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


FILE = {"files": [{"path": "from-b.txt", "content": "aGk="}]}
# (method, pattern) -> JSON body B sends naming A's objects; the answer must be 404.
FOREIGN: dict[tuple[str, str], Any] = {
    ("GET", "/api/agents/{}"): None,
    ("PATCH", "/api/agents/{}"): {"env": {"FROM_B": "1"}},
    ("DELETE", "/api/agents/{}"): None,
    ("GET", "/api/agents/{}/config"): None,
    ("PATCH", "/api/agents/{}/config"): {"preWarmCount": 0},
    ("GET", "/api/agents/{}/files"): None,
    ("POST", "/api/agents/{}/files"): FILE,
    ("GET", "/api/agents/{}/files/{}"): None,
    ("DELETE", "/api/agents/{}/files/{}"): None,
    ("GET", "/api/agents/{}/versions"): None,
    ("POST", "/api/agents/{}/versions"): {"systemPrompt": "hijacked by B"},
    ("GET", "/api/agents/{}/versions/{}"): None,
    ("PATCH", "/api/agents/{}/versions/{}"): {"releaseNotes": "B was here"},
    ("DELETE", "/api/agents/{}/versions/{}"): None,
    ("POST", "/api/agents/{}/versions/{}/activate"): {},
    ("GET", "/api/agents/{}/eval-cases"): None,
    ("POST", "/api/agents/{}/eval-cases"): {"prompt": "from B", "expected": "B"},
    ("POST", "/api/agents/{}/eval-cases/import"): {"cases": [{"prompt": "from B", "expected": "B"}]},
    ("GET", "/api/agents/{}/eval-cases/export"): None,
    ("GET", "/api/agents/{}/eval-cases/{}"): None,
    ("PATCH", "/api/agents/{}/eval-cases/{}"): {"name": "B was here"},
    ("DELETE", "/api/agents/{}/eval-cases/{}"): None,
    ("GET", "/api/agents/{}/eval-runs"): None,
    ("POST", "/api/agents/{}/eval-runs"): {},
    ("GET", "/api/agents/{}/eval-runs/compare"): None,
    ("GET", "/api/agents/{}/eval-runs/{}"): None,
    ("GET", "/api/agents/{}/eval-runs/{}/results"): None,
    ("POST", "/api/agents/{}/eval-runs/{}/score"): {"humanScore": 1, "humanNotes": "B"},
    ("PATCH", "/api/agents/{}/eval-results/{}"): {"humanScore": 1},
    ("POST", "/api/sessions"): {"agent": A_AGENT},
    ("GET", "/api/sessions/{}"): None,
    ("DELETE", "/api/sessions/{}"): None,
    ("POST", "/api/sessions/{}/stop"): {},
    ("POST", "/api/sessions/{}/pause"): {},
    ("POST", "/api/sessions/{}/resume"): {},
    ("POST", "/api/sessions/{}/fork"): {},
    ("POST", "/api/sessions/{}/interrupt"): {},
    ("PATCH", "/api/sessions/{}/config"): {"systemPrompt": "B"},
    ("GET", "/api/sessions/{}/messages"): None,
    ("POST", "/api/sessions/{}/messages"): {"content": "hello from B"},
    ("GET", "/api/sessions/{}/events"): None,
    ("GET", "/api/sessions/{}/stream"): None,
    ("POST", "/api/sessions/{}/exec"): {"command": "true"},
    ("GET", "/api/sessions/{}/logs"): None,
    ("GET", "/api/sessions/{}/files"): None,
    ("POST", "/api/sessions/{}/files"): FILE,
    ("GET", "/api/sessions/{}/files/{}"): None,
    ("DELETE", "/api/sessions/{}/files/{}"): None,
    ("GET", "/api/sessions/{}/workspace"): None,
    ("POST", "/api/sessions/{}/workspace"): {"bundle": _tar_gz()},
    ("GET", "/api/sessions/{}/attachments"): None,
    ("POST", "/api/sessions/{}/attachments"): {"filename": "b.txt", "content": "aGk="},
    ("GET", "/api/attachments/{}"): None,
    ("DELETE", "/api/attachments/{}"): None,
    ("POST", "/api/queue"): {"agentName": A_AGENT, "prompt": "run as B"},
    ("GET", "/api/queue/{}"): None,
    ("DELETE", "/api/queue/{}"): None,
    ("DELETE", "/api/api-keys/{}"): None,
    ("GET", "/api/credentials/{}"): None,
    ("DELETE", "/api/credentials/{}"): None,
}
# Listings and totals: B's answer (200) must not mention any of A's objects.
LISTS = {("GET", p) for p in ("/api/agents", "/api/sessions", "/api/api-keys", "/api/credentials", "/api/queue",
                              "/api/queue/stats", "/api/usage", "/api/usage/stats", "/api/analytics")}
# Routes with their own check below.
SPECIAL = {("GET", "/metrics"): "process-wide: 403 for any key of a tenant other than 'default'",
           ("POST", "/api/internal/api-keys"): "operator route: an API key is not the internal secret (401)",
           ("POST", "/api/agents"): "B deploys into its own tenant; checked last: A's same-named agent unchanged",
           ("POST", "/api/api-keys"): "creates a key of B's own tenant (no A object named)",
           ("POST", "/api/credentials"): "creates a credential of B's own tenant (no A object named)",
           **{("POST", f"/api/internal/runners/{verb}"): "runner route: an API key is not the internal secret (401)"
              for verb in ("register", "heartbeat", "deregister")},
           **{(method, f"/api/internal/runners{rest}"): "the runner registry serves every tenant: 403 for any key "
              "of a tenant other than 'default'"
              for method, rest in (("GET", ""), ("POST", "/{}/drain"), ("POST", "/{}/undrain"))}}


def cases_missing() -> list[str]:
    covered = set(FOREIGN) | LISTS | set(SPECIAL)
    return sorted(f"{m} {r.pattern}" for r in route_table() if r.pattern not in PUBLIC
                  for m in r.methods if (m, r.pattern) not in covered)


def test_every_route_of_the_table_has_a_tenancy_case() -> None:
    missing = cases_missing()
    assert not missing, ("routes without a cross-tenant case in tests/e2e/test_tenancy.py (add each to "
                         "FOREIGN, LISTS or SPECIAL): " + ", ".join(missing))


def test_every_non_public_route_is_served_by_an_authenticating_handler() -> None:
    from ashd.http.base import ApiHandler

    bypass = [r.pattern for r in route_table() if r.pattern not in PUBLIC and not issubclass(r.handler, ApiHandler)]
    assert not bypass, f"routes whose handler skips ApiHandler's auth, scope and rate checks: {bypass}"


def test_api_keys_and_credentials_routes_need_admin_for_every_method() -> None:
    for route in route_table():
        if route.pattern.startswith(("/api/api-keys", "/api/credentials")):
            for method in route.methods:
                declared = getattr(route.handler, "required_scope", None)
                assert scopes.required(declared, method) == scopes.ADMIN, (method, route.pattern)


@dataclass
class World:
    daemon: AshdProcess
    a: httpx.Client
    b: httpx.Client
    ids: dict[str, str]  # A's objects by kind: agent, session, key, version, queue, ...
    a_read_key: str
    a_write_key: str

    def concrete(self, pattern: str) -> str:
        """Fill each ``{}`` of a pattern with A's object of the kind named by the segment before it."""
        kinds = {"agents": "agent", "sessions": "session", "api-keys": "key", "queue": "queue",
                 "credentials": "credential", "versions": "version", "attachments": "attachment",
                 "files": "file", "eval-cases": "eval_case", "eval-runs": "eval_run",
                 "eval-results": "eval_result"}
        parts = pattern.split("/")
        for i, part in enumerate(parts):
            if part == "{}":
                kind = kinds.get(parts[i - 1])
                assert kind is not None, f"no rule to fill {{}} after {parts[i - 1]!r} in {pattern}"
                assert kind in self.ids, f"the fixture created no {kind} for A (needed by {pattern})"
                parts[i] = self.ids[kind]
        return "/".join(parts)

    def mentions_a(self, text: str) -> list[str]:
        return [v for k, v in self.ids.items() if k not in ("version", "file") and v in text]


def _mint(daemon: AshdProcess, tenant: str, scopes_: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"tenantId": tenant, **({"scopes": scopes_} if scopes_ else {})}
    resp = httpx.post(f"{daemon.url}/api/internal/api-keys", json=body,
                      headers={"Authorization": f"Bearer {SECRET}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    return cast(dict[str, Any], resp.json())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          scripted_model: ScriptedModel) -> Iterator[World]:
    with backend_database(request.param) as url:
        yield from _world(tmp_path_factory.mktemp("tenancy"), scripted_model, url)


def _world(base: Path, scripted_model: ScriptedModel, database_url: str | None) -> Iterator[World]:
    daemon = AshdProcess(base / "data", scripted_model.base_url, database_url, {
        "ASH_INTERNAL_SECRET": SECRET, "ASH_ALLOWED_ORIGINS": ORIGIN,
        "ASH_CREDENTIAL_KEY": "credential-key-for-tenancy-tests"}).start()
    a = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
    b_key = _mint(daemon, "tenant-b")["key"]
    b = httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {b_key}"}, timeout=60)
    try:
        ids = _create_a_objects(a)
        read = a.post("/api/api-keys", json={"label": "ro", "scopes": ["read"]})
        write = a.post("/api/api-keys", json={"label": "rw", "scopes": ["write"]})
        assert read.status_code == write.status_code == 201, (read.text, write.text)
        yield World(daemon, a, b, ids, read.json()["key"], write.json()["key"])
    finally:
        a.close()
        b.close()
        daemon.stop()


def _create_a_objects(a: httpx.Client) -> dict[str, str]:
    assert a.post("/api/agents", json={"name": A_AGENT, "path": str(HELLO_AGENT)}).status_code == 201
    resp = a.post("/api/sessions", json={"agent": A_AGENT})
    assert resp.status_code == 201, resp.text
    ids = {"agent": A_AGENT, "session": resp.json()["session"]["id"], "file": "CLAUDE.md"}
    made = a.post("/api/api-keys", json={"label": "a-extra"})
    assert made.status_code == 201, made.text
    ids["key"] = made.json()["id"]
    resp = a.post(f"/api/agents/{A_AGENT}/versions", json={"systemPrompt": "A's prompt"})
    assert resp.status_code == 201, resp.text
    ids["version"] = str(resp.json()["version"]["versionNumber"])
    resp = a.post("/api/credentials", json={"type": "anthropic", "key": "sk-a-secret", "label": "a"})
    assert resp.status_code == 201, resp.text
    ids["credential"] = resp.json()["credential"]["id"]
    resp = a.post("/api/queue", json={"agentName": A_AGENT, "prompt": "[[say: queued]]"})
    assert resp.status_code == 201, resp.text
    ids["queue"] = resp.json()["item"]["id"]
    resp = a.post(f"/api/sessions/{ids['session']}/attachments", json={"filename": "a.txt", "content": "aGk="})
    assert resp.status_code == 201, resp.text
    ids["attachment"] = resp.json()["attachment"]["id"]
    resp = a.post(f"/api/agents/{A_AGENT}/eval-cases", json={"prompt": "[[say: A's answer]]", "expected": "A's"})
    assert resp.status_code == 201, resp.text
    ids["eval_case"] = resp.json()["case"]["id"]
    resp = a.post(f"/api/agents/{A_AGENT}/eval-runs", json={})
    assert resp.status_code == 201, resp.text
    ids["eval_run"] = resp.json()["run"]["id"]
    results = a.get(f"/api/agents/{A_AGENT}/eval-runs/{ids['eval_run']}/results").json()["results"]
    ids["eval_result"] = results[0]["id"]
    return ids


def _snapshot(w: World) -> dict[str, Any]:
    """A's objects as A sees them (fields that change by themselves left out)."""
    a, sid = w.a, w.ids["session"]
    session = a.get(f"/api/sessions/{sid}").json()["session"]
    session.pop("lastActiveAt", None)
    snap: dict[str, Any] = {
        "agent": a.get(f"/api/agents/{A_AGENT}").json(),
        "config": a.get(f"/api/agents/{A_AGENT}/config").json(),
        "session": session,
        "messages": a.get(f"/api/sessions/{sid}/messages").json(),
        "keys": a.get("/api/api-keys").json(),
    }
    if "credential" in w.ids:
        snap["credentials"] = a.get("/api/credentials").json()
    if "version" in w.ids:
        snap["versions"] = a.get(f"/api/agents/{A_AGENT}/versions").json()
    if "queue" in w.ids:
        snap["queue"] = a.get(f"/api/queue/{w.ids['queue']}").status_code
    if "attachment" in w.ids:
        snap["attachments"] = a.get(f"/api/sessions/{sid}/attachments").json()
    if "eval_case" in w.ids:
        snap["eval_cases"] = a.get(f"/api/agents/{A_AGENT}/eval-cases").json()
        results = a.get(f"/api/agents/{A_AGENT}/eval-runs/{w.ids['eval_run']}/results").json()["results"]
        snap["human_scores"] = [(r["id"], r["humanScore"], r["humanNotes"]) for r in results]
        snap["eval_runs"] = [r["id"] for r in a.get(f"/api/agents/{A_AGENT}/eval-runs").json()["runs"]]
    return snap


def test_tenant_b_gets_404_on_every_route_naming_a_tenant_a_object(world: World) -> None:
    missing = cases_missing()
    assert not missing, "routes without a cross-tenant case: " + ", ".join(missing)
    before = _snapshot(world)
    failures = []
    for route in route_table():
        for method in route.methods:
            key = (method, route.pattern)
            if route.pattern in PUBLIC or key in SPECIAL:
                continue
            path = world.concrete(route.pattern)
            body = FOREIGN.get(key)
            resp = world.b.request(method, path, json=body if body is not None or method != "GET" else None)
            if key in LISTS:
                if resp.status_code != 200 or world.mentions_a(resp.text):
                    failures.append(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
            elif resp.status_code != 404 or resp.json().get("statusCode") != 404:
                failures.append(f"{method} {path}: expected 404, got {resp.status_code} {resp.text[:300]}")
    metrics = world.b.get("/metrics")
    if metrics.status_code != 403:
        failures.append(f"GET /metrics with B's key: {metrics.status_code}")
    internal = world.b.post("/api/internal/api-keys", json={"tenantId": "default"})
    if internal.status_code != 401:
        failures.append(f"POST /api/internal/api-keys with B's API key: {internal.status_code}")
    for verb in ("register", "heartbeat", "deregister"):
        runner = world.b.post(f"/api/internal/runners/{verb}", json={"runnerId": "r1", "host": "h", "port": 1})
        if runner.status_code != 401:
            failures.append(f"POST /api/internal/runners/{verb} with B's API key: {runner.status_code}")
    for method, path in (("GET", "/api/internal/runners"), ("POST", "/api/internal/runners/r1/drain"),
                         ("POST", "/api/internal/runners/r1/undrain")):
        registry = world.b.request(method, path)
        if registry.status_code != 403:
            failures.append(f"{method} {path} with B's admin key: {registry.status_code}")
    assert not failures, "cross-tenant leaks:\n" + "\n".join(failures)
    assert _snapshot(world) == before, "B's requests changed A's objects"
    # B may use the same agent name in its own tenant; A's agent is another object.
    upload = {"name": A_AGENT, "files": [{"path": "CLAUDE.md", "content": "IyBC"}]}  # "# B"
    assert world.b.post("/api/agents", json=upload).status_code == 201
    after = _snapshot(world)
    assert after["agent"] == before["agent"] and after["session"] == before["session"]


def test_a_read_key_can_get_but_gets_403_on_everything_needing_write_or_admin(world: World) -> None:
    read = httpx.Client(base_url=world.daemon.url, headers={"Authorization": f"Bearer {world.a_read_key}"},
                        timeout=60)
    wrong = []
    with read:
        for route in route_table():
            if route.pattern in PUBLIC or route.pattern.startswith("/api/internal/"):
                continue
            declared = getattr(route.handler, "required_scope", None)
            for method in route.methods:
                needed = scopes.required(declared, method)
                resp = read.request(method, world.concrete(route.pattern),
                                    json=FOREIGN.get((method, route.pattern)) if method != "GET" else None)
                if needed == scopes.READ:
                    ok = resp.status_code not in (401, 403)
                else:
                    ok = resp.status_code == 403 and resp.json()["error"] == (
                        f"This API key lacks the '{needed}' scope (it has: read)")
                if not ok:
                    wrong.append(f"{method} {route.pattern} (needs {needed}): {resp.status_code} {resp.text[:200]}")
        assert not wrong, "\n".join(wrong)
        # One per group, explicitly: reads work, writes are refused.
        assert read.get(f"/api/sessions/{world.ids['session']}").status_code == 200
        assert read.get("/api/agents").status_code == 200
        assert read.post("/api/agents", json={"name": "x", "path": str(HELLO_AGENT)}).status_code == 403
        assert read.delete(f"/api/sessions/{world.ids['session']}").status_code == 403
        assert read.get("/api/api-keys").status_code == 403
    with httpx.Client(base_url=world.daemon.url, timeout=60,
                      headers={"Authorization": f"Bearer {world.a_write_key}"}) as write:
        assert write.get("/api/agents").status_code == 200
        lacks = write.post("/api/api-keys", json={"scopes": ["read"]})
        assert lacks.status_code == 403 and "'admin'" in lacks.json()["error"]
        assert write.get("/metrics").status_code == 403
    assert world.a.get(f"/api/sessions/{world.ids['session']}").json()["session"]["status"] != "ended"


def test_api_keys_list_create_and_revoke(world: World) -> None:
    a = world.a
    listed = a.get("/api/api-keys").json()["keys"]
    assert {k["id"] for k in listed} >= {world.ids["key"]}
    for key in listed:
        assert set(key) == {"id", "tenantId", "label", "scopes", "createdAt", "keyPrefix"}, key
        assert key["tenantId"] == "default"
    assert "env" not in {k["id"] for k in listed}  # no ASH_API_KEY on this daemon
    made = a.post("/api/api-keys", json={"label": "ci", "scopes": ["write", "read"]})
    assert made.status_code == 201
    body = made.json()
    assert body["key"].startswith("ash_") and body["label"] == "ci" and body["scopes"] == ["write", "read"]
    assert body["key"] not in a.get("/api/api-keys").text
    for bad, status in (({"scopes": ["root"]}, 400), ({"scopes": []}, 400), ({"label": 5}, 400),
                        ({"tenantId": "other"}, 400)):
        resp = a.post("/api/api-keys", json=bad)
        assert resp.status_code == status and resp.json()["statusCode"] == status, resp.text
    with httpx.Client(base_url=world.daemon.url, headers={"Authorization": f"Bearer {body['key']}"}) as ci:
        assert ci.get("/api/agents").status_code == 200
        assert a.delete(f"/api/api-keys/{body['id']}").status_code == 204
        assert ci.get("/api/agents").status_code == 401  # revoked at once
    assert a.delete(f"/api/api-keys/{body['id']}").status_code == 404
    assert a.delete("/api/api-keys/not-a-key").status_code == 404


def test_analytics_count_the_callers_tenant_only(world: World) -> None:
    mine = world.a.get("/api/analytics").json()
    theirs = world.b.get("/api/analytics").json()
    assert mine["sessions"]["total"] >= 1 and mine["agents"]["total"] >= 1
    assert theirs["sessions"] == {"total": 0, "byStatus": {}}
    assert theirs["messages"] == {"total": 0, "byRole": {}} and theirs["latency"]["turns"] == 0


def test_the_last_admin_key_cannot_delete_itself(world: World) -> None:
    first = _mint(world.daemon, "tenant-c")
    assert first["tenantId"] == "tenant-c" and first["scopes"] == ["admin"]
    c = httpx.Client(base_url=world.daemon.url, headers={"Authorization": f"Bearer {first['key']}"}, timeout=30)
    with c:
        refused = c.delete(f"/api/api-keys/{first['id']}")
        assert refused.status_code == 409 and "last admin key" in refused.json()["error"]
        second = c.post("/api/api-keys", json={"label": "successor"}).json()
        assert second["scopes"] == ["admin"]  # default: the scopes of the key asking
        assert c.delete(f"/api/api-keys/{first['id']}").status_code == 204
        assert c.get("/api/agents").status_code == 401
    with httpx.Client(base_url=world.daemon.url, headers={"Authorization": f"Bearer {second['key']}"}) as c2:
        assert [k["id"] for k in c2.get("/api/api-keys").json()["keys"]] == [second["id"]]


def test_internal_endpoint_needs_the_secret_and_validates_the_tenant(world: World) -> None:
    url = f"{world.daemon.url}/api/internal/api-keys"
    assert httpx.post(url, json={"tenantId": "x"}).status_code == 401
    assert httpx.post(url, json={"tenantId": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json={"tenantId": "x"}, headers=world.daemon.headers).status_code == 401
    auth = {"Authorization": f"Bearer {SECRET}"}
    for bad in ({}, {"tenantId": ""}, {"tenantId": "../etc"}, {"tenantId": "a b"}, {"tenantId": 7},
                {"tenantId": "ok", "scopes": ["god"]}):
        resp = httpx.post(url, json=bad, headers=auth)
        assert resp.status_code == 400 and resp.json()["statusCode"] == 400, (bad, resp.text)
    reader = _mint(world.daemon, "tenant-d", ["read"])
    assert set(reader) >= {"id", "key", "tenantId", "scopes"} and reader["scopes"] == ["read"]
    with httpx.Client(base_url=world.daemon.url, headers={"Authorization": f"Bearer {reader['key']}"}) as d:
        assert d.get("/api/agents").json() == {"agents": []}
        assert d.post("/api/agents", json={"name": "x", "path": str(HELLO_AGENT)}).status_code == 403


def test_health_is_minimal_without_a_key_and_tenant_scoped_with_one(world: World) -> None:
    public = httpx.get(f"{world.daemon.url}/health").json()
    assert set(public) == {"status", "version", "uptime"}
    bad = httpx.get(f"{world.daemon.url}/health", headers={"Authorization": "Bearer ash_wrong"})
    assert bad.status_code == 200 and set(bad.json()) == set(public)
    full_a = world.a.get("/health").json()
    assert {"activeSessions", "activeSandboxes", "pool", "coordinatorId"} <= set(full_a)
    assert full_a["activeSessions"] >= 1
    assert world.b.get("/health").json()["activeSessions"] == 0
    assert set(httpx.get(f"{world.daemon.url}/health/live").json()) == {"status", "version"}
    assert httpx.get(f"{world.daemon.url}/health/ready").json() == {"status": "ready"}  # probes: no tenant data


def test_cors_reflects_listed_origins_on_json_errors_preflight_and_sse(world: World) -> None:
    sid = world.ids["session"]
    pre = httpx.options(f"{world.daemon.url}/api/sessions/{sid}/messages",
                        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    for header in ("Authorization", "Last-Event-ID", "Content-Type"):
        assert header in pre.headers["access-control-allow-headers"]
    assert "POST" in pre.headers["access-control-allow-methods"]
    ok = world.a.get("/api/agents", headers={"Origin": ORIGIN})
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "Retry-After" in ok.headers["access-control-expose-headers"]
    denied = httpx.get(f"{world.daemon.url}/api/agents", headers={"Origin": ORIGIN})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN
    other = world.a.get("/api/agents", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    evil_pre = httpx.options(f"{world.daemon.url}/api/agents", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil_pre.headers and evil_pre.status_code == 404
    with world.a.stream("GET", f"/api/sessions/{sid}/stream", headers={"Origin": ORIGIN}, timeout=30) as sse:
        assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
        assert sse.headers["access-control-allow-origin"] == ORIGIN


def test_defaults_rate_limits_no_cors_and_internal_routes_disabled(tmp_path: Path,
                                                                   scripted_model: ScriptedModel) -> None:
    env_key = "ash_env-key-for-tests-0123456789abcdef"
    daemon = AshdProcess(tmp_path / "data", scripted_model.base_url, None, {
        "ASH_RATE_LIMIT_SESSIONS": "2", "ASH_RATE_LIMIT_WINDOW_S": "2", "ASH_API_KEY": env_key}).start()
    daemon.key = env_key  # no bootstrap key when ASH_API_KEY is set
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=30) as c:
            keys = c.get("/api/api-keys").json()["keys"]
            assert len(keys) == 1 and datetime.fromisoformat(keys[0].pop("createdAt")).tzinfo is not None
            assert keys == [{"id": "env", "tenantId": "default", "label": "ASH_API_KEY",
                             "scopes": ["admin", "deploy-path"], "keyPrefix": env_key[:8]}]
            assert c.delete("/api/api-keys/env").status_code == 400
            assert c.get("/metrics").status_code == 200  # the env key is the operator's admin key
            plain = c.get("/api/agents", headers={"Origin": ORIGIN})
            assert plain.status_code == 200
            assert not [h for h in plain.headers if h.lower().startswith("access-control-")]
            assert c.options("/api/agents", headers={"Origin": ORIGIN}).status_code == 404
            disabled = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": "x"},
                                  headers={"Authorization": "Bearer anything"})
            assert disabled.status_code == 404 and "ASH_INTERNAL_SECRET" in disabled.json()["error"]

            for _ in range(2):  # each attempt counts, even one that fails
                assert c.post("/api/sessions", json={"agent": "ghost"}).status_code == 404
            limited = c.post("/api/sessions", json={"agent": "ghost"})
            assert limited.status_code == 429
            assert limited.json() == {"statusCode": 429, "error": "Rate limit exceeded: 2 session creations "
                                      f"per 2 s; retry in {limited.headers['Retry-After']} s"}
            assert int(limited.headers["Retry-After"]) == 1
            assert c.get("/api/sessions").status_code == 200  # other routes are not limited by it
            deadline = time.monotonic() + 10
            while (status := c.post("/api/sessions", json={"agent": "ghost"}).status_code) == 429:
                assert time.monotonic() < deadline, "the session bucket never refilled"
                time.sleep(0.2)
            assert status == 404
    finally:
        daemon.stop()

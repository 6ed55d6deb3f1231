"""Issue #5 acceptance: attacks from inside, through the agent's own Bash tool, against a running
ashd (real CLI, scripted model). Each assertion fails if the sandbox leaks."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from tests.security.conftest import TARGET_MARKER, Agent
from tests.support.daemon import PLANTED_SECRET

FORK_BOMB = """python3 - <<'PY'
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork-stopped", e.errno, n)
try:
    while True:
        os.wait()
except ChildProcessError:
    pass
PY"""


def test_environment_holds_no_secret_and_upstream_gets_the_real_key(agent: Agent, battery: dict[str, Any]) -> None:
    out = agent.bash("env; tr '\\\\0' ' ' < /proc/1/cmdline")
    assert PLANTED_SECRET not in out and "ASHD_PLANTED_SECRET" not in out
    assert "sk-real-upstream-key" not in out and "ASH_" not in out
    assert "ANTHROPIC_API_KEY=ashd-sess-" in out  # the per-session token only
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8080" in out
    real = hashlib.sha256(b"sk-real-upstream-key").hexdigest()
    messages = [r for r in battery["model"].requests() if r.path == "/v1/messages"]
    assert messages and all(r.x_api_key_sha256 == real for r in messages)


def test_host_files_are_out_of_reach(agent: Agent, battery: dict[str, Any], data_dir: Path) -> None:
    other: Agent = battery["new_agent"]()
    other.bash("echo other-session-private > mine.txt")
    other_ws = data_dir / "sandboxes" / other.sid / "workspace"
    out = agent.bash(f"cat /etc/shadow; cat {data_dir}/ash.db | head -c 100; ls {data_dir}; ls /root /home; "
                     f"cat {other_ws}/mine.txt; cat ../../sandboxes/{other.sid}/workspace/mine.txt; "
                     f"cat /proc/1/root/etc/shadow; ls /; echo END")
    assert "SQLite" not in out and "other-session-private" not in out and "root:" not in out
    assert "initial-api-key" not in out and "sandboxes" not in out.split("END")[0].split("\n")[-2:]
    assert out.count("No such file or directory") >= 6, out


def test_network_reaches_only_the_allowlist(agent: Agent, battery: dict[str, Any]) -> None:
    port, model_port = battery["daemon"].port, battery["model"].base_url.rsplit(":", 1)[1]
    out = agent.bash(f"curl -sS -m 3 http://127.0.0.1:{port}/health; echo rc=$?; "
                     f"curl -sS -m 3 --noproxy '*' http://127.0.0.1:{model_port}/; echo rc=$?; "
                     "curl -sS -m 3 --noproxy '*' http://1.1.1.1/; echo rc=$?")
    assert '"status"' not in out and out.count("rc=0") == 0, out
    target = battery["target_port"]
    out = agent.bash(f"curl -sS -m 5 -p -x $HTTPS_PROXY http://allowed.test:{target}/; echo; echo rc=$?; "
                     f"curl -sS -m 5 -p -x $HTTPS_PROXY http://not-allowed.test:{target}/; echo rc=$?; "
                     "curl -sS -m 5 -p -x $HTTPS_PROXY https://denied-by-address.test/; echo rc=$?")
    assert TARGET_MARKER in out and out.count("rc=0") == 1, out
    decisions = [e for e in agent.lifecycle() if e.get("type") == "egress"]
    assert {(d["host"], d["allowed"]) for d in decisions} >= {("allowed.test", True), ("not-allowed.test", False),
                                                              ("denied-by-address.test", False)}


def test_policy_files_are_read_only_and_userns_is_off(agent: Agent) -> None:
    out = agent.bash("echo '{}' > .claude/settings.json; echo rc=$?; echo '{}' > .mcp.json; echo rc=$?; "
                     "mv .claude gone; echo rc=$?; unshare -U true; echo rc=$?; cat .claude/settings.json")
    assert "rc=0" not in out and "WebFetch" in out, out


def test_bombs_are_contained_and_ashd_keeps_serving(agent: Agent, battery: dict[str, Any]) -> None:
    other: Agent = battery["new_agent"]()
    served: list[str] = []

    def meanwhile() -> None:
        served.append(other.bash("echo still-serving"))

    thread = threading.Thread(target=meanwhile)
    thread.start()
    out = agent.bash(FORK_BOMB)
    assert "fork-stopped 11" in out, out
    events = agent.turn("[[bash: python3 -c 'a = bytearray(2 << 30)'; echo rc=$?]]")
    out = [d for n, d in events if n == "tool_result"][-1]["content"]
    assert "rc=137" in out, out
    errors = [d["error"] for n, d in events if n == "error"]
    assert any("out of memory" in e for e in errors), events  # told on the stream, the turn went on
    assert events[-1][0] == "done"
    out = agent.bash("dd if=/dev/zero of=fill bs=1M count=200 2>&1 | tail -4; stat -c %s fill; rm -f fill")
    assert "No space left on device" in out and int(out.strip().split("\n")[-1]) <= 64 << 20, out
    thread.join(180)
    assert served and "still-serving" in served[0]
    oom = [e for e in agent.lifecycle() if e.get("type") == "sandbox_oom"]
    assert oom and oom[0]["limitMb"] == 512
    assert agent.bash("echo alive-after-bombs").strip().endswith("alive-after-bombs")


def test_agent_symlinks_do_not_leak_through_ashd(agent: Agent, battery: dict[str, Any], data_dir: Path) -> None:
    """A link the agent makes (to the DB) is copied as a link by deploy/workspace copies, never followed."""
    agent.bash(f"ln -sf {data_dir}/ash.db leak.db; ln -sfn / rootlink; echo made")
    client = battery["client"]
    ws = data_dir / "sandboxes" / agent.sid / "workspace"
    (ws / "CLAUDE.md").exists()
    # A workspace is never an agent folder (it is inside the data dir: tests/security/test_deploy_path.py).
    resp = client.post("/api/agents", json={"name": "from-ws", "path": str(ws)})
    assert resp.status_code == 403, resp.text
    out = agent.bash("head -c 16 leak.db; readlink leak.db")
    assert "SQLite" not in out and str(data_dir) in out


def test_usage_is_served_per_session(agent: Agent, battery: dict[str, Any]) -> None:
    agent.turn("[[usage: in=1234 out=56]] [[say: metered]]")
    client = battery["client"]
    stats = client.get("/api/usage/stats", params={"sessionId": agent.sid}).json()["stats"]
    assert stats["totalInputTokens"] >= 1234 and stats["totalOutputTokens"] >= 56 and stats["totalCostUsd"] > 0
    events = client.get("/api/usage", params={"sessionId": agent.sid, "limit": 5}).json()["events"]
    assert events and {e["sessionId"] for e in events} == {agent.sid}


def test_health_reports_isolation_without_secrets(battery: dict[str, Any]) -> None:
    health = battery["client"].get("/health").json()
    iso = health["isolation"]
    assert iso["launcher"] == "bwrap" and iso["meetsFloor"]
    assert all(iso["layers"][k]["active"] for k in ("bwrap", "uid", "limits", "netns", "proxy", "egress", "quota"))
    assert "sk-real" not in str(health)


def test_python_packages_in_the_workspace_never_run_outside_the_sandbox(battery: dict[str, Any]) -> None:
    """The bridge and the CLI wrapper run as root on the host with the workspace as their working
    directory: ``python -m`` must not import what the agent put there (an ``ashd`` package)."""
    agent = battery["new_agent"]()
    daemon = battery["daemon"]
    escaped = daemon.data_dir.parent / f"escaped-{os.getpid()}"  # a host path, absent inside the sandbox
    payload = f"open('{escaped}', 'w').write('ran on the host')"
    agent.bash(f'mkdir -p ashd/sandbox ashd/bridge && echo "{payload}" | tee ashd/__init__.py > /dev/null'
               " && touch ashd/sandbox/__init__.py ashd/bridge/__init__.py && echo planted")
    # exec starts the CLI wrapper in the workspace; a restart of the agent process starts the bridge there.
    resp = battery["client"].post(f"/api/sessions/{agent.sid}/exec", json={"command": "echo exec-ok"})
    assert resp.status_code == 200 and "exec-ok" in resp.text, resp.text
    assert not escaped.exists(), "code from the workspace ran outside the sandbox"
    battery["client"].post(f"/api/sessions/{agent.sid}/stop").raise_for_status()
    battery["client"].post(f"/api/sessions/{agent.sid}/resume").raise_for_status()
    assert "ok" in agent.bash("echo ok")
    assert not escaped.exists(), "code from the workspace ran outside the sandbox"

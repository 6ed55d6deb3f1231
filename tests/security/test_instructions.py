"""Issue #15 item 6: an agent cannot rewrite its own instructions.

The agent appends a rule to ``/workspace/CLAUDE.md`` through its Bash tool. Whatever that
does, the requests the model receives afterwards (after its bridge is killed and restarted,
in a fork, after a cold resume from the snapshot) carry only the deployed instructions:
the scripted model records every request it gets.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ashd.scripted.server import ScriptedModel
from tests.support.daemon import AshdProcess, sse_events

pytestmark = pytest.mark.e2e


def _turn(c: httpx.Client, sid: str, content: str) -> list[tuple[str, Any]]:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}, timeout=180) as resp:
        assert resp.status_code == 200, resp.read()
        return sse_events(resp.read().decode())


def _requests_with(model: ScriptedModel, marker: str) -> list[Any]:
    bodies = [r.body for r in model.requests() if r.path.startswith("/v1/messages")]
    return [b for b in bodies if marker in json.dumps(b)]


def _kill_bridge(daemon: AshdProcess, sid: str) -> None:
    bridges = [p for p in daemon.descendants()
               if "ashd.bridge" in " ".join(p.cmdline()) and sid in " ".join(p.cmdline())]
    assert len(bridges) == 1, bridges
    os.kill(bridges[0].pid, signal.SIGKILL)
    psutil.wait_procs(bridges, timeout=30)
    # Wait until ashd has judged the crash (a message sent in the instant before that meets
    # the dead agent and ends in error + done; the one after restarts it).
    deadline = time.monotonic() + 60
    while f"session {sid} lost its agent process" not in daemon.log(tail=None):
        assert time.monotonic() < deadline, "ashd never noticed the killed bridge"
        time.sleep(0.05)


def test_what_the_agent_writes_to_claude_md_never_reaches_the_model_as_instructions(
        start_ashd: Callable[..., AshdProcess], scripted_model: ScriptedModel, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    deployed, injected = f"DEPLOYED-RULE-{tag}", f"INJECTED-RULE-{tag}"
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "CLAUDE.md").write_text(f"You are the instructions test agent. {deployed}\n")
    daemon = start_ashd(None)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "rules", "path": str(folder)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "rules"}).json()["session"]["id"]

        # The command text does not contain the injected rule itself (printf assembles it),
        # so finding the rule in a later request means it came from the file.
        _turn(c, sid, f"[[bash: printf 'INJ%sTED-RULE-%s\\n' EC {tag} >> CLAUDE.md; "
                      f"printf 'INJ%sTED-RULE-%s\\n' EC {tag} >> /workspace/CLAUDE.md; echo done]]")

        def check(where: str, sid_: str) -> None:
            marker = f"probe-{where}-{tag}"
            events = _turn(c, sid_, f"[[say: {marker}]]")
            assert events[-1][0] == "done", events
            bodies = _requests_with(scripted_model, marker)
            assert bodies, f"{where}: the model got no request carrying {marker}"
            for body in bodies:
                assert injected not in json.dumps(body), f"{where}: the agent's rule reached the model"
            assert any(deployed in json.dumps(b.get("system")) for b in bodies), \
                f"{where}: the deployed instructions are not the system prompt"
            assert any(deployed in json.dumps(b.get("messages")) for b in bodies), \
                f"{where}: the CLI did not load the deployed CLAUDE.md as project instructions"

        _kill_bridge(daemon, sid)  # the next turn starts a new CLI, which loads CLAUDE.md again
        check("restart", sid)

        fork = c.post(f"/api/sessions/{sid}/fork")
        assert fork.status_code == 201, fork.text
        child = fork.json()["session"]["id"]
        c.post(f"/api/sessions/{child}/resume").raise_for_status()
        check("fork", child)

        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
        c.post(f"/api/sessions/{sid}/resume").raise_for_status()  # cold: new sandbox, files from the snapshot
        check("cold-resume", sid)

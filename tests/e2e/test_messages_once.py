"""Issue #9.6: a turn's reply is shown once, by the API and by ``ashctl session messages``.

Like Ash, ashd stores the SDK's ``result`` message with role ``assistant`` (Ash clients accept
only ``user`` and ``assistant``); it repeats the reply's text. The API says what each message
is (``type``: user, assistant, result) and ashctl shows the result as an outcome, not as a
second copy of the reply.
"""

from __future__ import annotations

import json

import httpx
import pytest
from ash_sdk.models.message import Message

from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl import ashctl
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e
REPLY = "ok: hi"


def test_reply_shown_once_by_the_api_and_ashctl(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=120) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[say: {REPLY}]]"}) as r:
            assert r.status_code == 200
            r.read()
        messages = c.get(f"/api/sessions/{sid}/messages").json()["messages"]

    assert [m["type"] for m in messages] == ["user", "assistant", "result"]
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]  # Ash's roles
    replies = [m for m in messages if m["type"] == "assistant" and REPLY in m["content"]]
    assert len(replies) == 1, messages
    assert json.loads(messages[2]["content"])["type"] == "result"
    for m in messages:  # Ash's SDK still parses every message
        assert Message.from_dict(m).role in ("user", "assistant")

    shown = ashctl(ashd_sqlite, "session", "messages", sid)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert sum(REPLY in line for line in lines[1:]) == 1, shown.stdout  # the prompt quotes it too
    assert lines[1] == f"#2 assistant: {REPLY}" and lines[2].startswith("#3 result: done (1 turn"), lines

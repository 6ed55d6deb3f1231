"""ashctl commands against a real HTTP server standing in for ashd."""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ashd.cli.ashctl import main, run
from ashd.client import discovery

SESSION = {"id": "s1", "agentName": "bot", "status": "active", "createdAt": "2026-01-01T00:00:00Z"}
SEND_PATH = "/api/sessions/s1/messages"


class WatchedOutput(io.StringIO):
    """A StringIO a test can wait on until some text has been written."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            written = super().write(text)
            self._changed.notify_all()
            return written

    def wait_for(self, text: str, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: text in self.getvalue(), timeout)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def no_system_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep a real /var/lib/ashd/initial-api-key on the test machine out of the tests.
    monkeypatch.setattr(discovery, "SYSTEM_DATA_DIR", tmp_path / "no-system-dir")


def ashctl(fake: Any, *argv: str, key: str | None = "k", cwd: Path | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    flags = ["--server", fake.url] + (["--api-key", key] if key else [])
    code = run([*flags, *argv], out, err, {}, cwd)
    return Result(code, out.getvalue(), err.getvalue())


def turn(frame: Any, *events: tuple[str, Any]) -> list[bytes]:
    body = [frame(name, data) for name, data in events]
    return [frame("session_start", {"sessionId": "s1", "version": "0.1.0"}), *body,
            frame("done", {"sessionId": "s1"})]


# -- streaming ---------------------------------------------------------------------


def test_session_send_prints_deltas_as_they_arrive(fake_ashd: Any, frame: Any) -> None:
    release = threading.Event()
    fake_ashd.sse("POST", SEND_PATH, [
        frame("session_start", {"sessionId": "s1", "version": "0.1.0"}),
        frame("text_delta", {"delta": "Hel"}),
        release,  # nothing more until the test saw "Hel" on ashctl's stdout
        frame("text_delta", {"delta": "lo"}),
        frame("done", {"sessionId": "s1"}),
    ])
    out, err = WatchedOutput(), io.StringIO()
    argv = ["--server", fake_ashd.url, "--api-key", "k", "session", "send", "s1", "hi"]
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(run(argv, out, err, {})))
    worker.start()
    assert out.wait_for("Hel"), "the first delta was not printed while the stream was open"
    assert "lo" not in out.getvalue()
    release.set()
    worker.join(timeout=5)
    assert (codes, out.getvalue(), err.getvalue()) == ([0], "Hello\n", "")
    assert fake_ashd.last().body == {"content": "hi", "includePartialMessages": True}


def test_tool_calls_go_to_stderr(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, turn(
        frame,
        ("tool_use", {"id": "t", "name": "Bash", "input": {"command": "echo hi"}}),
        ("tool_result", {"tool_use_id": "t", "content": "hi\n", "is_error": False}),
        ("text_delta", {"delta": "It said hi."}),
    ))
    result = ashctl(fake_ashd, "session", "send", "s1", "run it")
    assert (result.code, result.out, result.err) == (
        0, "It said hi.\n", "[tool] Bash: echo hi\n[result] hi\n")


def test_without_partials_the_assistant_text_is_printed(fake_ashd: Any, frame: Any) -> None:
    assistant = {"type": "assistant", "message": {"content": [{"type": "text", "text": "Hi!"}]}}
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("message", assistant)))
    assert ashctl(fake_ashd, "session", "send", "s1", "hi").out == "Hi!\n"


def test_json_prints_one_object_per_event(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("text_delta", {"delta": "a"})))
    result = ashctl(fake_ashd, "session", "send", "s1", "hi", "--json")
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [e["event"] for e in events] == ["session_start", "text_delta", "done"]
    assert events[1] == {"event": "text_delta", "data": {"delta": "a"}, "id": None}


def test_error_event_exits_1(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("error", {"error": "bridge crashed"})))
    result = ashctl(fake_ashd, "session", "send", "s1", "hi")
    assert (result.code, result.err) == (1, "error: bridge crashed\n")


def test_stream_cut_before_done_exits_3(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, [frame("text_delta", {"delta": "partial"})])
    result = ashctl(fake_ashd, "session", "send", "s1", "hi")
    assert (result.code, result.out) == (3, "partial\n")
    assert "closed the stream before the turn finished" in result.err


def test_refused_turn_exits_1_with_the_servers_message(fake_ashd: Any) -> None:
    fake_ashd.error("POST", SEND_PATH, 400, "Session is paused")
    result = ashctl(fake_ashd, "session", "send", "s1", "hi")
    assert (result.code, result.err) == (1, "ashctl: error: session is paused (400)\n")


def test_message_dash_reads_stdin(
    fake_ashd: Any, frame: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from a pipe"))
    fake_ashd.sse("POST", SEND_PATH, turn(frame))
    assert ashctl(fake_ashd, "session", "send", "s1", "-").code == 0
    assert fake_ashd.last().body["content"] == "from a pipe"


# -- chat --------------------------------------------------------------------------


def test_chat_creates_a_session_and_tells_how_to_continue(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.json("POST", "/api/sessions", {"session": SESSION}, status=201)
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("text_delta", {"delta": "yo"})))
    result = ashctl(fake_ashd, "chat", "bot", "hi")
    assert (result.code, result.out) == (0, "yo\n")
    assert "session s1" in result.err and "-s s1" in result.err
    assert [(r.method, r.path) for r in fake_ashd.requests] == [
        ("POST", "/api/sessions"), ("POST", SEND_PATH)]
    assert fake_ashd.requests[0].body == {"agent": "bot"}


def test_chat_with_session_id_and_end(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("text_delta", {"delta": "ok"})))
    fake_ashd.json("DELETE", "/api/sessions/s1", {"session": {**SESSION, "status": "ended"}})
    result = ashctl(fake_ashd, "chat", "bot", "again", "-s", "s1", "--end")
    assert (result.code, result.out, result.err) == (0, "ok\n", "session s1 ended\n")
    assert [(r.method, r.path) for r in fake_ashd.requests] == [
        ("POST", SEND_PATH), ("DELETE", "/api/sessions/s1")]


def test_chat_end_still_ends_the_session_when_the_turn_fails(fake_ashd: Any) -> None:
    fake_ashd.error("POST", SEND_PATH, 500, "Runner not available")
    fake_ashd.json("DELETE", "/api/sessions/s1", {"session": SESSION})
    result = ashctl(fake_ashd, "chat", "bot", "hi", "-s", "s1", "--end")
    assert result.code == 1
    assert result.err == "session s1 ended\nashctl: error: runner not available (500)\n"


# -- errors and authentication ---------------------------------------------------------


def test_not_found_is_a_human_sentence_and_exit_1(fake_ashd: Any) -> None:
    fake_ashd.error("GET", "/api/agents/x", 404, 'Agent "x" not found')
    result = ashctl(fake_ashd, "agent", "info", "x")
    assert (result.code, result.out, result.err) == (
        1, "", 'ashctl: error: agent "x" not found (404)\n')


def test_401_without_any_key_explains_where_it_looked(fake_ashd: Any, tmp_path: Path) -> None:
    fake_ashd.error("GET", "/api/agents", 401, "Missing Authorization header")
    result = ashctl(fake_ashd, "agent", "list", key=None, cwd=tmp_path)
    assert result.code == 3
    assert "the server requires an API key and none was found" in result.err
    assert f"{tmp_path / 'data' / 'initial-api-key'} (missing)" in result.err
    assert "--api-key KEY" in result.err


def test_key_from_bootstrap_file_is_sent(fake_ashd: Any, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "initial-api-key").write_text("ash_boot\n")
    fake_ashd.json("GET", "/api/agents", {"agents": []})
    assert ashctl(fake_ashd, "agent", "list", key=None, cwd=tmp_path).code == 0
    assert fake_ashd.last().headers["authorization"] == "Bearer ash_boot"


def test_rejected_key_exits_1_and_names_its_source(fake_ashd: Any) -> None:
    fake_ashd.error("GET", "/api/agents", 401, "Invalid API key")
    result = ashctl(fake_ashd, "agent", "list")
    assert (result.code, result.err) == (
        1, "ashctl: error: invalid API key (401) (key from --api-key)\n")


def test_unreachable_server_exits_3() -> None:
    err = io.StringIO()
    assert run(["--server", "http://127.0.0.1:1", "health"], io.StringIO(), err, {}) == 3
    assert "cannot connect to http://127.0.0.1:1" in err.getvalue()


# -- plain commands ------------------------------------------------------------------


def test_session_list_table_and_raw_json(fake_ashd: Any) -> None:
    other = {**SESSION, "id": "s22", "status": "active", "runtime": "parked"}
    fake_ashd.json("GET", "/api/sessions", {"sessions": [SESSION, other]})
    table = ashctl(fake_ashd, "session", "list", "--agent", "bot")
    assert table.out.splitlines() == [  # RUNTIME: warm or parked ("-" from an ashd that does not say)
        "ID   AGENT  STATUS  RUNTIME  CREATED",
        "s1   bot    active  -        2026-01-01T00:00:00Z",
        "s22  bot    active  parked   2026-01-01T00:00:00Z",
    ]
    assert fake_ashd.last().query == "agent=bot"
    raw = ashctl(fake_ashd, "--json", "session", "list")
    assert json.loads(raw.out) == {"sessions": [SESSION, other]}


def test_agent_list_table(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/agents", {"agents": [
        {"name": "bot", "version": 3, "updatedAt": "2026-01-02"}]})
    assert ashctl(fake_ashd, "agent", "list").out == (
        "NAME  VERSION  UPDATED\nbot   3        2026-01-02\n")


def test_deploy_uploads_the_folder(fake_ashd: Any, tmp_path: Path) -> None:
    folder = tmp_path / "my-agent"
    (folder / "tools").mkdir(parents=True)
    (folder / "CLAUDE.md").write_text("# prompt")
    (folder / "tools" / "run.sh").write_text("echo")
    (folder / ".env").write_text("SECRET=1")
    fake_ashd.json("POST", "/api/agents",
                   {"agent": {"name": "my-agent", "version": 2}}, status=201)
    result = ashctl(fake_ashd, "deploy", str(folder), "-e", "MODE=fast")
    assert result.code == 0
    assert result.out.startswith("deployed agent my-agent version 2 (2 files")
    body = fake_ashd.last().body
    assert (body["name"], body["env"]) == ("my-agent", {"MODE": "fast"})
    uploaded = {f["path"]: base64.b64decode(f["content"]) for f in body["files"]}
    assert uploaded == {"CLAUDE.md": b"# prompt", "tools/run.sh": b"echo"}


def test_deploy_without_claude_md_sends_nothing_and_exits_2(
    fake_ashd: Any, tmp_path: Path
) -> None:
    result = ashctl(fake_ashd, "deploy", str(tmp_path), "--name", "x")
    assert (result.code, fake_ashd.requests) == (2, [])
    assert "has no CLAUDE.md" in result.err


def test_session_create_prints_only_the_id(fake_ashd: Any) -> None:
    fake_ashd.json("POST", "/api/sessions", {"session": SESSION}, status=201)
    result = ashctl(fake_ashd, "session", "create", "bot", "--model", "m", "-e", "A=1")
    assert (result.code, result.out) == (0, "s1\n")
    assert fake_ashd.last().body == {"agent": "bot", "model": "m", "extraEnv": {"A": "1"}}


@pytest.mark.parametrize(
    ("action", "method", "path", "status"),
    [("pause", "POST", "/api/sessions/s1/pause", "paused"),
     ("stop", "POST", "/api/sessions/s1/stop", "stopped"),
     ("resume", "POST", "/api/sessions/s1/resume", "active"),
     ("end", "DELETE", "/api/sessions/s1", "ended")],
)
def test_session_state_changes(
    fake_ashd: Any, action: str, method: str, path: str, status: str
) -> None:
    fake_ashd.json(method, path, {"session": {**SESSION, "status": status}})
    assert ashctl(fake_ashd, "session", action, "s1").out == f"session s1 is {status}\n"


def test_session_messages_shows_text(fake_ashd: Any) -> None:
    stored = [
        {"sequence": 1, "role": "user", "content": json.dumps({"type": "user", "content": "hi"})},
        {"sequence": 2, "role": "assistant", "content": json.dumps(
            {"type": "assistant", "message": {"content": [{"type": "text", "text": "hello"}]}})},
    ]
    fake_ashd.json("GET", "/api/sessions/s1/messages", {"messages": stored})
    result = ashctl(fake_ashd, "session", "messages", "s1", "--limit", "2")
    assert result.out == "#1 user: hi\n#2 assistant: hello\n"
    assert fake_ashd.last().query == "limit=2"


def test_health_via_main(fake_ashd: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fake_ashd.json("GET", "/health", {"status": "ok", "version": "0.1.0", "activeSessions": 2})
    assert main(["--server", fake_ashd.url, "health"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "status          ok", "version         0.1.0", "activeSessions  2"]


def test_analytics_flattens_the_figures_and_passes_the_window(fake_ashd: Any) -> None:
    figures = {"agents": {"total": 2}, "sessions": {"total": 3, "byStatus": {"active": 1, "ended": 2}},
               "latency": {"turns": 0, "turnP50Ms": None}, "evals": {"totalRuns": 0, "byStatus": {}}}
    fake_ashd.json("GET", "/api/analytics", figures)
    shown = ashctl(fake_ashd, "analytics", "--after", "2026-01-01T00:00:00Z")
    assert shown.code == 0 and [line.split() for line in shown.out.splitlines()] == [
        ["agents.total", "2"], ["sessions.total", "3"], ["sessions.byStatus.active", "1"],
        ["sessions.byStatus.ended", "2"], ["latency.turns", "0"], ["latency.turnP50Ms", "-"],
        ["evals.totalRuns", "0"], ["evals.byStatus", "-"],
    ]
    assert fake_ashd.last().query == "after=2026-01-01T00%3A00%3A00Z"
    assert json.loads(ashctl(fake_ashd, "analytics", "--json").out) == figures
    assert fake_ashd.last().query == ""


def test_keys_list_shows_each_keys_prefix(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/api-keys", {"keys": [
        {"id": "k1", "label": "ci", "scopes": ["read"], "createdAt": "2026-01-01T00:00:00.000Z",
         "keyPrefix": "ash_AbCd"},
        {"id": "k2", "label": "old", "scopes": ["admin"], "createdAt": "2025-01-01T00:00:00.000Z",
         "keyPrefix": None}]})
    assert ashctl(fake_ashd, "keys", "list").out.splitlines() == [
        "ID  PREFIX    LABEL  SCOPES  CREATED",
        "k1  ash_AbCd  ci     read    2026-01-01T00:00:00.000Z",
        "k2  -         old    admin   2025-01-01T00:00:00.000Z",
    ]


def test_session_create_sends_the_session_option_flags(fake_ashd: Any) -> None:
    fake_ashd.json("POST", "/api/sessions", {"session": SESSION}, status=201)
    result = ashctl(fake_ashd, "session", "create", "bot", "--allowed-tool", "Read", "--allowed-tool", "Bash(ls:*)",
                    "--disallowed-tool", "Write", "--permission-mode", "default", "--beta", "b-1",
                    "--mcp-servers", '{"f": {"command": "srv"}}', "--subagents",
                    '{"r": {"description": "d", "prompt": "p"}}', "--initial-agent", "r", "--json")
    assert result.code == 0 and json.loads(result.out)["session"]["id"] == "s1"
    assert fake_ashd.last().body == {
        "agent": "bot", "allowedTools": ["Read", "Bash(ls:*)"], "disallowedTools": ["Write"],
        "permissionMode": "default", "betas": ["b-1"], "mcpServers": {"f": {"command": "srv"}},
        "subagents": {"r": {"description": "d", "prompt": "p"}}, "initialAgent": "r"}


def test_session_send_sends_the_turn_option_flags(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", SEND_PATH, turn(frame, ("text_delta", {"delta": "a"})))
    result = ashctl(fake_ashd, "session", "send", "s1", "hi", "--max-turns", "2", "--effort", "low",
                    "--max-budget-usd", "0.5", "--thinking-tokens", "2048", "--output-schema", '{"type": "object"}',
                    "--json")
    assert result.code == 0, result.err
    assert fake_ashd.last().body == {
        "content": "hi", "includePartialMessages": True, "maxTurns": 2, "effort": "low", "maxBudgetUsd": 0.5,
        "thinking": {"type": "enabled", "budgetTokens": 2048},
        "outputFormat": {"type": "json_schema", "schema": {"type": "object"}}}


def test_a_json_flag_that_is_not_json_is_a_usage_error(fake_ashd: Any) -> None:
    result = ashctl(fake_ashd, "session", "create", "bot", "--mcp-servers", "{nope")
    assert result.code == 2 and "--mcp-servers" in result.err and "not JSON" in result.err

"""AshdClient against a real (fake) HTTP server: routes, errors, streaming."""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ashd.client import AshdClient, AshdConnectionError, AshdError
from ashd.client.events import Done, SessionStart, TextDelta

AGENT = {"id": "a1", "name": "bot", "version": 1}
SESSION = {"id": "s1", "agentName": "bot", "status": "active"}
MESSAGES_PATH = "/api/sessions/s1/messages"

Call = Callable[[AshdClient], Any]

# (call, method, path, query, expected request body, canned answer, expected return)
ROUTES: list[tuple[str, Call, str, str, str, Any, Any, Any]] = [
    ("health", lambda c: c.health(), "GET", "/health", "", None,
     {"status": "ok"}, {"status": "ok"}),
    ("deploy files", lambda c: c.deploy_agent(
        "bot", files=[{"path": "CLAUDE.md", "content": "eA=="}], env={"K": "V"}),
     "POST", "/api/agents", "",
     {"name": "bot", "files": [{"path": "CLAUDE.md", "content": "eA=="}], "env": {"K": "V"}},
     {"agent": AGENT}, AGENT),
    ("deploy path", lambda c: c.deploy_agent("bot", path="/srv/bot"), "POST", "/api/agents", "",
     {"name": "bot", "path": "/srv/bot"}, {"agent": AGENT}, AGENT),
    ("list agents", lambda c: c.list_agents(), "GET", "/api/agents", "", None,
     {"agents": [AGENT]}, [AGENT]),
    ("get agent", lambda c: c.get_agent("bot"), "GET", "/api/agents/bot", "", None,
     {"agent": AGENT}, AGENT),
    ("delete agent", lambda c: c.delete_agent("bot"), "DELETE", "/api/agents/bot", "", None,
     {"ok": True}, None),
    ("create session", lambda c: c.create_session(
        "bot", model="m", system_prompt="p", extra_env={"X": "1"}, credential_id=None),
     "POST", "/api/sessions", "",
     {"agent": "bot", "model": "m", "systemPrompt": "p", "extraEnv": {"X": "1"}},
     {"session": SESSION}, SESSION),
    ("list sessions", lambda c: c.list_sessions(), "GET", "/api/sessions", "", None,
     {"sessions": [SESSION]}, [SESSION]),
    ("list sessions of agent", lambda c: c.list_sessions("bot"), "GET", "/api/sessions",
     "agent=bot", None, {"sessions": []}, []),
    ("get session", lambda c: c.get_session("s1"), "GET", "/api/sessions/s1", "", None,
     {"session": SESSION}, SESSION),
    ("end session", lambda c: c.end_session("s1"), "DELETE", "/api/sessions/s1", "", None,
     {"session": SESSION}, SESSION),
    ("stop session", lambda c: c.stop_session("s1"), "POST", "/api/sessions/s1/stop", "", None,
     {"session": SESSION}, SESSION),
    ("pause session", lambda c: c.pause_session("s1"), "POST", "/api/sessions/s1/pause", "",
     None, {"session": SESSION}, SESSION),
    ("resume session", lambda c: c.resume_session("s1"), "POST", "/api/sessions/s1/resume", "",
     None, {"session": SESSION}, SESSION),
    ("list messages", lambda c: c.list_messages("s1", limit=5, after=2), "GET", MESSAGES_PATH,
     "limit=5&after=2", None, {"messages": [{"id": "m1"}]}, [{"id": "m1"}]),
]


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "body", "answer", "expected"),
    [route[1:] for route in ROUTES],
    ids=[route[0] for route in ROUTES],
)
def test_every_route_sends_the_right_request_and_unwraps_the_answer(
    fake_ashd: Any, call: Call, method: str, path: str, query: str, body: Any, answer: Any,
    expected: Any,
) -> None:
    fake_ashd.json(method, path, answer)
    assert call(AshdClient(fake_ashd.url, api_key="k")) == expected
    request = fake_ashd.last()
    assert (request.method, request.path, request.query, request.body) == (
        method, path, query, body)
    assert request.headers["authorization"] == "Bearer k"


def test_no_authorization_header_without_a_key(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/health", {"status": "ok"})
    AshdClient(fake_ashd.url).health()
    assert "authorization" not in fake_ashd.last().headers


def test_path_segments_are_quoted(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/sessions/..%2Fagents", {"session": SESSION})
    AshdClient(fake_ashd.url).get_session("../agents")
    assert fake_ashd.last().path == "/api/sessions/..%2Fagents"


def test_base_url_path_prefix_is_kept(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/ash/health", {"status": "ok"})
    assert AshdClient(fake_ashd.url + "/ash/").health() == {"status": "ok"}


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:4100", "http://"])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="server URL"):
        AshdClient(url)


def test_4xx_raises_with_the_servers_error_text(fake_ashd: Any) -> None:
    fake_ashd.error("GET", "/api/agents/x", 404, 'Agent "x" not found')
    with pytest.raises(AshdError) as caught:
        AshdClient(fake_ashd.url).get_agent("x")
    assert (caught.value.status_code, caught.value.message) == (404, 'Agent "x" not found')
    assert str(caught.value) == 'Agent "x" not found (404)'


def test_framework_style_error_keeps_its_detail(fake_ashd: Any) -> None:
    body = {"statusCode": 429, "error": "Too Many Requests", "message": "retry in 1 minute"}
    fake_ashd.json("POST", "/api/sessions", body, status=429)
    with pytest.raises(AshdError, match="Too Many Requests: retry in 1 minute"):
        AshdClient(fake_ashd.url).create_session("bot")


def test_non_json_error_body_becomes_the_message(fake_ashd: Any) -> None:
    fake_ashd.raw("GET", "/health", 502, b"Bad Gateway from proxy", "text/plain")
    with pytest.raises(AshdError) as caught:
        AshdClient(fake_ashd.url).health()
    assert (caught.value.status_code, caught.value.message) == (502, "Bad Gateway from proxy")


def test_answer_without_its_envelope_is_an_error(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/sessions/s1", {"id": "s1"})
    with pytest.raises(AshdError, match="no 'session' object"):
        AshdClient(fake_ashd.url).get_session("s1")


def test_connection_refused(unused_port: int) -> None:
    with pytest.raises(AshdConnectionError, match="connection refused"):
        AshdClient(f"http://127.0.0.1:{unused_port}").health()


def test_silent_server_times_out(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/health", {"status": "ok"}, hold=threading.Event())
    with pytest.raises(AshdConnectionError, match="timed out"):
        AshdClient(fake_ashd.url, timeout=0.2).health()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- streaming ---------------------------------------------------------------------


def consume_in_thread(events: Any) -> tuple[queue.Queue[Any], threading.Thread]:
    """Iterate in a thread, putting each event (or the exception) on a queue."""
    out: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for event in events:
                out.put(event)
        except Exception as exc:  # handed to the test thread
            out.put(exc)
        out.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return out, thread


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_events_arrive_while_the_server_is_still_writing(
    fake_ashd: Any, frame: Any, chunked: bool
) -> None:
    release = threading.Event()
    fake_ashd.sse("POST", MESSAGES_PATH, [
        frame("session_start", {"sessionId": "s1", "version": "1"}, "1"),
        frame("text_delta", {"delta": "Hel"}, "2"),
        release,  # the server writes nothing more until the test has seen "Hel"
        frame("text_delta", {"delta": "lo"}, "3"),
        frame("done", {"sessionId": "s1"}, "4"),
    ], chunked=chunked)
    events, thread = consume_in_thread(AshdClient(fake_ashd.url).send_message("s1", "hi"))
    first = SessionStart("session_start", {"sessionId": "s1", "version": "1"}, "1", "s1", "1")
    assert events.get(timeout=5) == first
    assert events.get(timeout=5) == TextDelta("text_delta", {"delta": "Hel"}, "2", "Hel")
    assert events.empty()
    release.set()
    assert events.get(timeout=5).data == {"delta": "lo"}
    assert events.get(timeout=5).event == "done"
    assert events.get(timeout=5) is None
    thread.join(timeout=5)


def test_send_message_body_asks_for_partials_and_maps_options(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [frame("done", {"sessionId": "s1"})])
    client = AshdClient(fake_ashd.url)
    list(client.send_message("s1", "hi", model="m", max_turns=3, effort=None))
    request = fake_ashd.last()
    assert request.body == {"content": "hi", "includePartialMessages": True, "model": "m",
                            "maxTurns": 3}
    assert request.headers["accept"] == "text/event-stream"
    list(client.send_message("s1", [{"type": "text", "text": "x"}], include_partial=False))
    assert fake_ashd.last().body == {"content": [{"type": "text", "text": "x"}],
                                     "includePartialMessages": False}


def test_send_message_is_lazy(fake_ashd: Any) -> None:
    AshdClient(fake_ashd.url).send_message("s1", "hi")
    assert fake_ashd.requests == []


def test_refusal_before_the_stream_raises_ashd_error(fake_ashd: Any) -> None:
    fake_ashd.error("POST", MESSAGES_PATH, 400, "Session is paused")
    with pytest.raises(AshdError, match=r"Session is paused \(400\)"):
        list(AshdClient(fake_ashd.url).send_message("s1", "hi"))


def test_stream_ending_before_done_is_a_connection_error(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [frame("text_delta", {"delta": "a"})])
    received = []
    with pytest.raises(AshdConnectionError, match="before the turn finished"):
        for event in AshdClient(fake_ashd.url).send_message("s1", "hi"):
            received.append(event.event)
    assert received == ["text_delta"]


def test_no_read_timeout_once_streaming(fake_ashd: Any, frame: Any) -> None:
    release = threading.Event()
    fake_ashd.sse("POST", MESSAGES_PATH, [
        frame("session_start", {}), release, frame("done", {"sessionId": "s1"})])
    client = AshdClient(fake_ashd.url, timeout=0.5)
    events, thread = consume_in_thread(client.send_message("s1", "hi"))
    assert events.get(timeout=5).event == "session_start"
    # Elapsed time is what is under test here: stay silent for 3x the timeout.
    time.sleep(1.5)
    release.set()
    assert events.get(timeout=5).event == "done"
    thread.join(timeout=5)


def test_closing_the_iterator_early_closes_the_connection(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [
        frame("session_start", {}), threading.Event(), frame("done", {})])
    stream = AshdClient(fake_ashd.url).send_message("s1", "hi")
    assert next(stream).event == "session_start"
    stream.close()  # with -W error, a leaked socket would fail the test as a ResourceWarning


STREAM_PATH = "/api/sessions/s1/stream"


def test_a_dropped_stream_is_resumed_with_last_event_id_exactly_once(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [
        frame("session_start", {"sessionId": "s1"}, "7"), frame("text_delta", {"delta": "a"}, "8")])
    fake_ashd.sse("GET", STREAM_PATH, [  # the replay overlaps what was already delivered
        frame("text_delta", {"delta": "a"}, "8"), frame("text_delta", {"delta": "b"}, "9"),
        frame("done", {"sessionId": "s1"}, "10")])
    events = list(AshdClient(fake_ashd.url).send_message("s1", "hi"))
    assert [(e.event, e.id) for e in events] == [
        ("session_start", "7"), ("text_delta", "8"), ("text_delta", "9"), ("done", "10")]
    assert isinstance(events[-1], Done)
    resumed = fake_ashd.last()
    assert (resumed.method, resumed.path) == ("GET", STREAM_PATH)
    assert resumed.headers["last-event-id"] == "8"


def test_reconnecting_gives_up_after_the_allowed_attempts(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [frame("session_start", {}, "1")])
    fake_ashd.sse("GET", STREAM_PATH, [])  # the server never gets further
    with pytest.raises(AshdConnectionError, match="gave up after 2 reconnects"):
        list(AshdClient(fake_ashd.url).send_message("s1", "hi", reconnects=2))
    assert [r.method for r in fake_ashd.requests] == ["POST", "GET", "GET"]


def test_a_refused_reconnect_is_not_retried(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES_PATH, [frame("session_start", {}, "1")])
    fake_ashd.error("GET", STREAM_PATH, 404, "Session s1 not found")
    with pytest.raises(AshdError, match="not found"):
        list(AshdClient(fake_ashd.url).send_message("s1", "hi"))


def test_follow_until_done_replays_after_an_id_and_ends_when_the_server_does(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("GET", STREAM_PATH, [frame("text_delta", {"delta": "x"}, "4")])
    events = list(AshdClient(fake_ashd.url).follow("s1", after=3, until_done=True))
    assert [e.id for e in events] == ["4"]
    assert fake_ashd.last().headers["last-event-id"] == "3"


def three_turns(frame: Any) -> list[bytes]:
    return [frame(name, {"sessionId": "s1"}, str(seq))
            for turn in range(3) for seq, name in ((turn * 2 + 1, "session_start"), (turn * 2 + 2, "done"))]


def test_follow_goes_past_each_done_and_reopens_until_the_session_ends(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("GET", STREAM_PATH, three_turns(frame))  # replayed in full on every (re)connect
    fake_ashd.json("GET", "/api/sessions/s1", {"session": {"id": "s1", "status": "ended"}})
    events = list(AshdClient(fake_ashd.url).follow("s1"))
    assert [(e.event, e.id) for e in events] == [(n, str(i)) for i, n in enumerate(
        ["session_start", "done"] * 3, start=1)]  # all three turns, each event once
    streams = [r for r in fake_ashd.requests if r.path == STREAM_PATH]
    assert streams[0].query == "follow=true" and "last-event-id" not in streams[0].headers


def test_follow_reconnects_after_the_last_event_while_the_session_lives(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("GET", STREAM_PATH, three_turns(frame))
    fake_ashd.json("GET", "/api/sessions/s1", {"session": {"id": "s1", "status": "active"}})
    events = AshdClient(fake_ashd.url).follow("s1", after=2)
    assert [e.id for e in itertools.islice(events, 4)] == ["3", "4", "5", "6"]
    rest: list[Any] = []
    consumer = threading.Thread(target=lambda: rest.extend(events), daemon=True)
    consumer.start()

    def streams() -> list[Any]:
        return [r for r in fake_ashd.requests if r.path == STREAM_PATH]

    deadline = time.monotonic() + 60
    while len(streams()) < 2 and time.monotonic() < deadline:  # a closed stream of a live session is reopened
        time.sleep(0.05)
    assert len(streams()) >= 2 and streams()[-1].headers["last-event-id"] == "6"
    fake_ashd.json("GET", "/api/sessions/s1", {"session": {"id": "s1", "status": "ended"}})
    consumer.join(60)
    assert not consumer.is_alive() and rest == []  # the replay repeated nothing; the end ended it

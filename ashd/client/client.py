"""`AshdClient`: one method per ashd (Ash-compatible) REST route.

Every method blocks the calling thread, opens its own connection, and raises
:class:`~ashd.client.errors.AshdError` (non-2xx, with the server's ``error``
text) or :class:`~ashd.client.errors.AshdConnectionError` (unreachable, timed
out, dropped). Methods return the resource inside Ash's envelope, e.g.
``get_session`` returns the ``session`` object of ``{"session": {...}}``.

Calls that create, persist or destroy sandboxes (deploy, session create, end,
stop, pause, resume) wait up to ``slow_timeout`` instead of ``timeout``,
because a fresh sandbox may run the agent's ``install.sh`` first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.sse import SSEEvent, SSEParser, SSEProtocolError
from ashd.client.transport import Transport

JSON = dict[str, Any]


def camel_case(name: str) -> str:
    """``system_prompt`` -> ``systemPrompt``; camelCase input is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_options(options: Mapping[str, Any]) -> JSON:
    """Map snake_case keyword options to Ash's camelCase fields, dropping Nones."""
    return {camel_case(key): value for key, value in options.items() if value is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _unwrap(answer: JSON, key: str) -> JSON:
    value = answer.get(key)
    if not isinstance(value, dict):
        raise AshdError(200, f"the server's answer has no {key!r} object")
    return value


def _unwrap_list(answer: JSON, key: str) -> list[JSON]:
    value = answer.get(key)
    if not isinstance(value, list):
        raise AshdError(200, f"the server's answer has no {key!r} list")
    return value


class AshdClient:
    """Blocking client for one ashd server; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        slow_timeout: float = 300.0,
    ) -> None:
        """Raise :class:`ValueError` if ``base_url`` is not an http(s) URL."""
        self._http = Transport(base_url, api_key, timeout)
        self.base_url = self._http.base_url
        self.slow_timeout = max(slow_timeout, timeout)

    # -- health and agents -------------------------------------------------

    def health(self) -> JSON:
        """``GET /health``: ``{status, version, activeSessions, ..., pool}``."""
        return self._http.request_json("GET", "/health")

    def deploy_agent(
        self,
        name: str,
        path: str | None = None,
        files: Sequence[Mapping[str, str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> JSON:
        """``POST /api/agents``: register a server-side ``path`` or upload ``files``.

        ``files`` items are ``{"path": relative POSIX path, "content": base64}``
        (see :func:`ashd.client.agent_files.collect_agent_files`). Returns the
        agent; a redeploy bumps its ``version``.
        """
        body: JSON = {"name": name}
        if path is not None:
            body["path"] = path
        if files is not None:
            body["files"] = [dict(item) for item in files]
        if env:
            body["env"] = dict(env)
        answer = self._http.request_json("POST", "/api/agents", body, timeout=self.slow_timeout)
        return _unwrap(answer, "agent")

    def list_agents(self) -> list[JSON]:
        """``GET /api/agents``: the caller's agents."""
        return _unwrap_list(self._http.request_json("GET", "/api/agents"), "agents")

    def get_agent(self, name: str) -> JSON:
        """``GET /api/agents/:name``."""
        return _unwrap(self._http.request_json("GET", f"/api/agents/{_seg(name)}"), "agent")

    def delete_agent(self, name: str) -> None:
        """``DELETE /api/agents/:name`` (also deletes the agent's session rows)."""
        self._http.request_json("DELETE", f"/api/agents/{_seg(name)}")

    # -- sessions ------------------------------------------------------------

    def create_session(self, agent: str, **options: Any) -> JSON:
        """``POST /api/sessions``; returns the new session.

        ``options`` are Ash's optional fields in snake_case (``model``,
        ``system_prompt``, ``extra_env``, ``credential_id``, ``mcp_servers``,
        ``permission_mode``, ``allowed_tools``, ...); ``None`` values are omitted.
        """
        body = {"agent": agent, **camel_options(options)}
        return self._session("POST", "/api/sessions", body, self.slow_timeout)

    def list_sessions(self, agent: str | None = None) -> list[JSON]:
        """``GET /api/sessions[?agent=]``: newest first."""
        answer = self._http.request_json("GET", "/api/sessions", query={"agent": agent})
        return _unwrap_list(answer, "sessions")

    def get_session(self, session_id: str) -> JSON:
        """``GET /api/sessions/:id``."""
        return self._session("GET", f"/api/sessions/{_seg(session_id)}")

    def end_session(self, session_id: str) -> JSON:
        """``DELETE /api/sessions/:id``: end for good (idempotent); returns it ended."""
        return self._session("DELETE", f"/api/sessions/{_seg(session_id)}", None, self.slow_timeout)

    def stop_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/stop``: persist, destroy the sandbox; resumable."""
        return self._action(session_id, "stop")

    def pause_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/pause``: persist, keep the sandbox warm."""
        return self._action(session_id, "pause")

    def resume_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/resume``: back to ``active`` (warm or cold)."""
        return self._action(session_id, "resume")

    def list_messages(
        self, session_id: str, limit: int | None = None, after: int | None = None
    ) -> list[JSON]:
        """``GET /api/sessions/:id/messages``: persisted messages in sequence order.

        Each item's ``content`` is a JSON *string* (the stored SDK message).
        """
        answer = self._http.request_json(
            "GET",
            f"/api/sessions/{_seg(session_id)}/messages",
            query={"limit": limit, "after": after},
        )
        return _unwrap_list(answer, "messages")

    def send_message(
        self,
        session_id: str,
        content: str | Sequence[Mapping[str, Any]],
        include_partial: bool = True,
        **options: Any,
    ) -> Iterator[SSEEvent]:
        """``POST /api/sessions/:id/messages``: run one turn, yielding its events.

        Lazy: nothing is sent until the first ``next()``. Events are yielded as
        they arrive (``session_start``, ``text_delta``, ``tool_use``, ...,
        ``done``); there is no read timeout once the stream has started.
        ``options`` are snake_case extras (``model``, ``max_turns``,
        ``max_budget_usd``, ``effort``, ``thinking``, ``output_format``).

        Raises :class:`AshdError` if the server refuses the turn before
        streaming (e.g. 400 "Session is paused"), and
        :class:`AshdConnectionError` if the stream ends before ``done`` or
        breaks the SSE parser's limits.
        Closing the iterator early closes the connection.
        """
        body: JSON = {
            "content": content if isinstance(content, str) else [dict(b) for b in content],
            "includePartialMessages": include_partial,
            **camel_options(options),
        }
        parser = SSEParser()
        chunks = self._http.stream("POST", f"/api/sessions/{_seg(session_id)}/messages", body)
        try:
            for chunk in chunks:
                try:
                    events = parser.feed(chunk)
                except SSEProtocolError as exc:
                    raise AshdConnectionError(f"{self.base_url} sent a bad stream: {exc}") from exc
                for event in events:
                    yield event
                    if event.event == "done":
                        return
        finally:
            chunks.close()
        raise AshdConnectionError(f"{self.base_url} closed the stream before the turn finished")

    # -- helpers -------------------------------------------------------------

    def _action(self, session_id: str, verb: str) -> JSON:
        path = f"/api/sessions/{_seg(session_id)}/{verb}"
        return self._session("POST", path, None, self.slow_timeout)

    def _session(
        self, method: str, path: str, body: JSON | None = None, timeout: float | None = None
    ) -> JSON:
        return _unwrap(self._http.request_json(method, path, body, timeout=timeout), "session")

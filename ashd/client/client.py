"""`AshdClient`: one blocking method per ashd (Ash-compatible) REST route.

Every method blocks the calling thread, opens its own connection, and raises
:class:`~ashd.client.errors.AshdError` (non-2xx, with the server's ``error``
text) or :class:`~ashd.client.errors.AshdConnectionError` (unreachable, timed
out, dropped). Methods return the resource inside Ash's envelope, e.g.
``get_session`` returns the ``session`` object of ``{"session": {...}}``.
The requests themselves are defined once in :mod:`ashd.client.calls`; the
asyncio twin is :class:`ashd.client.aio.AsyncAshdClient`.

Calls that create, persist or destroy sandboxes (deploy, session create, end,
stop, pause, resume, fork, workspace bundles) wait up to ``slow_timeout``
instead of ``timeout``, because a fresh sandbox may run ``install.sh`` first.
``progress(done_bytes, total_bytes_or_None)``, when given, is called as
request bodies are sent and raw downloads arrive (for progress bars).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, Literal

from ashd.client import calls
from ashd.client.calls import JSON, Call
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.eval_calls import EvalMethods
from ashd.client.events import Done, StreamEvent
from ashd.client.resume import (
    DEFAULT_RECONNECTS,
    FOLLOW_PAUSE_S,
    EventDecoder,
    StreamCursor,
    first_headers,
    follow_path,
    stream_path,
)
from ashd.client.transport import Progress, Transport

_seg = calls.seg
camel_case = calls.camel_case
camel_options = calls.camel_options


class AshdClient(EvalMethods):
    """Blocking client for one ashd server; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        slow_timeout: float = 300.0,
        progress: Progress | None = None,
    ) -> None:
        """Raise :class:`ValueError` if ``base_url`` is not an http(s) URL."""
        self._http = Transport(base_url, api_key, timeout)
        self.base_url = self._http.base_url
        self.slow_timeout = max(slow_timeout, timeout)
        self.progress = progress

    def call(self, call: Call) -> Any:
        """Execute any :class:`~ashd.client.calls.Call` (every method below is one)."""
        timeout = self.slow_timeout if call.slow else None
        if call.shape == "bytes":
            return self._http.request_bytes(call.method, call.path, call.query, timeout, self.progress)
        answer = self._http.request_json(call.method, call.path, call.body, call.query, timeout, self.progress)
        try:
            return calls.unwrap(call, answer)
        except ValueError as exc:
            raise AshdError(200, str(exc)) from None

    # -- health, usage -----------------------------------------------------------

    def health(self) -> JSON:
        """``GET /health``: ``{status, version, ...}``."""
        return self.call(calls.health())

    def usage(self, **filters: str | int | None) -> list[JSON]:
        """``GET /api/usage``: usage events (``session_id``, ``agent_name``, ``after``, ``before``, ``limit``)."""
        return self.call(calls.usage(filters))

    def usage_stats(self, **filters: str | int | None) -> JSON:
        """``GET /api/usage/stats``: totals over the same filters."""
        return self.call(calls.usage(filters, stats=True))

    def analytics(self, after: str | None = None, before: str | None = None) -> JSON:
        """``GET /api/analytics``: agents, sessions, messages, usage, latency, evals."""
        return self.call(calls.analytics(after, before))

    # -- agents --------------------------------------------------------------------

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
        return self.call(calls.deploy_agent(name, path, files, env))

    def list_agents(self) -> list[JSON]:
        return self.call(calls.list_agents())

    def get_agent(self, name: str) -> JSON:
        return self.call(calls.get_agent(name))

    def update_agent(self, name: str, env: Mapping[str, str] | None = None,
                     config: Mapping[str, Any] | None = None) -> JSON:
        """``PATCH /api/agents/:name``: replace ``env``, shallow-merge ``config``."""
        return self.call(calls.update_agent(name, env, config))

    def delete_agent(self, name: str) -> None:
        """``DELETE /api/agents/:name`` (also ends and deletes the agent's sessions)."""
        self.call(calls.delete_agent(name))

    def agent_config(self, name: str, patch: Mapping[str, Any] | None = None) -> JSON:
        """``GET`` (or with ``patch``, ``PATCH``) ``/api/agents/:name/config``."""
        return self.call(calls.agent_config(name, patch))

    def list_agent_files(self, name: str) -> list[JSON]:
        return self.call(calls.list_agent_files(name))

    def read_agent_file(self, name: str, path: str) -> bytes:
        return self.call(calls.read_agent_file(name, path))

    def write_agent_files(self, name: str, files: Mapping[str, bytes]) -> JSON:
        return self.call(calls.write_agent_files(name, files))

    def delete_agent_file(self, name: str, path: str) -> JSON:
        return self.call(calls.delete_agent_file(name, path))

    def agent_versions(self, name: str) -> list[JSON]:
        return self.call(calls.agent_versions(name))

    def create_agent_version(self, name: str, **fields: Any) -> JSON:
        """``POST /api/agents/:name/versions`` (``system_prompt``, ``release_notes``, ...)."""
        return self.call(calls.create_agent_version(name, **fields))

    def activate_agent_version(self, name: str, number: int | str) -> JSON:
        return self.call(calls.activate_agent_version(name, number))

    # -- sessions ------------------------------------------------------------------

    def create_session(self, agent: str, **options: Any) -> JSON:
        """``POST /api/sessions``; returns the new session.

        ``options`` are Ash's optional fields in snake_case (``model``,
        ``system_prompt``, ``extra_env``, ``credential_id``, ``mcp_servers``,
        ``permission_mode``, ``allowed_tools``, ...); ``None`` values are omitted.
        """
        return self.call(calls.create_session(agent, **options))

    def list_sessions(self, agent: str | None = None, status: str | None = None) -> list[JSON]:
        """``GET /api/sessions``: newest first."""
        return self.call(calls.list_sessions(agent, status))

    def get_session(self, session_id: str) -> JSON:
        return self.call(calls.get_session(session_id))

    def end_session(self, session_id: str) -> JSON:
        """``DELETE /api/sessions/:id``: end for good (idempotent); returns it ended."""
        return self.call(calls.end_session(session_id))

    def stop_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/stop``: persist, destroy the sandbox; resumable."""
        return self._action(session_id, "stop")

    def pause_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/pause``: persist, keep the sandbox warm."""
        return self._action(session_id, "pause")

    def resume_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/resume``: back to ``active`` (warm or cold)."""
        return self._action(session_id, "resume")

    def fork_session(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/fork``: a new paused session with this one's files and conversation."""
        return self._action(session_id, "fork")

    def configure_session(self, session_id: str, **fields: Any) -> JSON:
        """``PATCH /api/sessions/:id/config`` (``model``, ``allowed_tools``, ...)."""
        return self.call(calls.configure_session(session_id, **fields))

    def interrupt(self, session_id: str) -> JSON:
        """``POST /api/sessions/:id/interrupt``: stop the running turn."""
        return self.call(calls.interrupt(session_id))

    def list_messages(self, session_id: str, limit: int | None = None, after: int | None = None) -> list[JSON]:
        """``GET /api/sessions/:id/messages``; each ``content`` is a JSON *string*."""
        return self.call(calls.list_messages(session_id, limit, after))

    def list_events(self, session_id: str, limit: int | None = None, after: int | None = None,
                    type: str | None = None) -> list[JSON]:
        """``GET /api/sessions/:id/events``: the timeline."""
        return self.call(calls.list_events(session_id, limit, after, type))

    def logs(self, session_id: str, after: int | None = None) -> JSON:
        """``GET /api/sessions/:id/logs``: ``{logs: [...], source}``."""
        return self.call(calls.logs(session_id, after))

    def exec(self, session_id: str, command: str, timeout_ms: int | None = None) -> JSON:
        """``POST /api/sessions/:id/exec``: ``{exitCode, stdout, stderr}`` (runs inside the sandbox)."""
        return self.call(calls.exec_command(session_id, command, timeout_ms))

    def list_files(self, session_id: str, include_hidden: bool = True) -> JSON:
        """``GET /api/sessions/:id/files``: ``{files: [...], source}``."""
        return self.call(calls.list_files(session_id, include_hidden))

    def read_file(self, session_id: str, path: str) -> bytes:
        return self.call(calls.read_file(session_id, path))

    def write_files(self, session_id: str, files: Mapping[str, bytes], target: str | None = None) -> list[JSON]:
        """``POST /api/sessions/:id/files``: per-file results ``{path, written, error?}``."""
        return self.call(calls.write_files(session_id, files, target))

    def delete_file(self, session_id: str, path: str) -> JSON:
        return self.call(calls.delete_file(session_id, path))

    def download_workspace(self, session_id: str) -> bytes:
        """``GET /api/sessions/:id/workspace``: the workspace as tar.gz bytes."""
        return self.call(calls.download_workspace(session_id))

    def upload_workspace(self, session_id: str, bundle: bytes) -> JSON:
        """``POST /api/sessions/:id/workspace``: extract a tar.gz into the workspace."""
        return self.call(calls.upload_workspace(session_id, bundle))

    def add_attachment(self, session_id: str, filename: str, data: bytes, mime_type: str | None = None) -> JSON:
        return self.call(calls.add_attachment(session_id, filename, data, mime_type))

    def list_attachments(self, session_id: str) -> list[JSON]:
        return self.call(calls.list_attachments(session_id))

    def read_attachment(self, attachment_id: str) -> bytes:
        return self.call(calls.read_attachment(attachment_id))

    def delete_attachment(self, attachment_id: str) -> None:
        self.call(calls.delete_attachment(attachment_id))

    # -- keys, credentials, queue ----------------------------------------------------

    def list_keys(self) -> list[JSON]:
        return self.call(calls.list_keys())

    def create_key(self, label: str | None = None, scopes: Sequence[str] | None = None) -> JSON:
        """``POST /api/api-keys``: ``{id, key, ...}``; the key is shown only here."""
        return self.call(calls.create_key(label, scopes))

    def delete_key(self, key_id: str) -> None:
        self.call(calls.delete_key(key_id))

    def list_credentials(self) -> list[JSON]:
        return self.call(calls.list_credentials())

    def add_credential(self, type: str, key: str, label: str | None = None) -> JSON:
        return self.call(calls.add_credential(type, key, label))

    def delete_credential(self, credential_id: str) -> None:
        self.call(calls.delete_credential(credential_id))

    def enqueue(self, agent_name: str, prompt: str, **options: Any) -> JSON:
        """``POST /api/queue`` (``session_id``, ``priority``, ``max_retries``)."""
        return self.call(calls.enqueue(agent_name, prompt, **options))

    def list_queue(self, status: str | None = None, limit: int | None = None) -> list[JSON]:
        return self.call(calls.list_queue(status, limit))

    def list_runners(self) -> JSON:
        """``GET /api/internal/runners`` (a coordinator's registry; the operator's key or secret)."""
        return self.call(calls.list_runners())

    def drain_runner(self, runner_id: str, draining: bool = True) -> JSON:
        """``POST /api/internal/runners/:id/drain`` (or ``undrain``): the runner's entry."""
        return self.call(calls.drain_runner(runner_id, draining))

    def queue_stats(self) -> JSON:
        return self.call(calls.queue_stats())

    def queue_item(self, item_id: str) -> JSON:
        return self.call(calls.queue_item(item_id))

    def cancel_queue_item(self, item_id: str) -> JSON:
        return self.call(calls.queue_item(item_id, cancel=True))

    # -- streams -------------------------------------------------------------------

    def send_message(
        self,
        session_id: str,
        content: str | Sequence[Mapping[str, Any]],
        include_partial: bool = True,
        *,
        reconnects: int = DEFAULT_RECONNECTS,
        **options: Any,
    ) -> Iterator[StreamEvent]:
        """``POST /api/sessions/:id/messages``: run one turn, yielding its typed events.

        Lazy: nothing is sent until the first ``next()``. Events are yielded as
        they arrive (``SessionStart``, ``TextDelta``, ``ToolUse``, ..., ``Done``);
        there is no read timeout once the stream has started. ``options`` are
        snake_case extras (``model``, ``max_turns``, ``max_budget_usd``,
        ``effort``, ``thinking``, ``output_format``).

        If the connection drops mid-turn, the client reconnects by itself (up to
        ``reconnects`` times in a row, with growing pauses) to the session's
        ``/stream`` with ``Last-Event-ID``; every event is yielded exactly once.

        Raises :class:`AshdError` if the server refuses the turn before
        streaming (e.g. 409 "Session is paused"), and
        :class:`AshdConnectionError` if the stream cannot be resumed (it broke
        before its first event, or reconnecting kept failing).
        Closing the iterator early closes the connection.
        """
        call = calls.send_message(session_id, content, include_partial, options)
        first = self._http.stream(call.method, call.path, call.body)
        return self._resumable(session_id, first, StreamCursor(reconnects=reconnects), until_done=True)

    def follow(
        self, session_id: str, after: int | None = None, *, until_done: bool = False,
        reconnects: int = DEFAULT_RECONNECTS,
    ) -> Iterator[StreamEvent]:
        """``GET /api/sessions/:id/stream``: every stored event after ``after`` (all when
        None), then each new turn's events as they happen, turn after turn. Runs until the
        session ends or the caller stops iterating (Ctrl-C); a broken or closed connection is
        reopened with ``Last-Event-ID``, so every event is yielded exactly once.

        ``until_done=True``: the old behaviour, ending at the next ``Done`` (or when the
        server has nothing more). Raises :class:`AshdError` (e.g. 404) and
        :class:`AshdConnectionError` when reconnecting keeps failing."""
        cursor = StreamCursor(last_id=after, reconnects=reconnects)
        if until_done:
            first = self._http.stream("GET", stream_path(_seg(session_id)), headers=first_headers(after))
            return self._resumable(session_id, first, cursor, until_done=False)
        return self._following(session_id, cursor)

    def _following(self, session_id: str, cursor: StreamCursor) -> Iterator[StreamEvent]:
        while True:
            decoder = EventDecoder(self.base_url)
            chunks = self._http.stream("GET", follow_path(_seg(session_id)), headers=first_headers(cursor.last_id))
            failure: AshdConnectionError | None = None
            try:
                for event in (event for chunk in chunks for event in decoder.feed(chunk)):
                    if cursor.accept(event):
                        yield event
            except AshdConnectionError as exc:
                failure = exc
            finally:
                chunks.close()
            if failure is not None:
                cursor.next_attempt(failure)  # raises once reconnecting keeps failing
                time.sleep(cursor.backoff_s)
            elif self.get_session(session_id).get("status") == "ended":
                return
            else:
                time.sleep(FOLLOW_PAUSE_S)  # closed cleanly (a server without follow): poll again

    def _resumable(
        self, session_id: str, chunks: Generator[bytes, None, None], cursor: StreamCursor, until_done: bool
    ) -> Iterator[StreamEvent]:
        while True:
            decoder = EventDecoder(self.base_url)
            try:
                for event in (event for chunk in chunks for event in decoder.feed(chunk)):
                    if cursor.accept(event):
                        yield event
                        if isinstance(event, Done):
                            return
                if not until_done:
                    return
                failure = decoder.ended_early()
            except AshdConnectionError as exc:
                failure = exc
            finally:
                chunks.close()
            headers = cursor.next_attempt(failure)
            time.sleep(cursor.backoff_s)
            chunks = self._http.stream("GET", stream_path(_seg(session_id)), headers=headers)

    # -- helpers -------------------------------------------------------------

    def _action(self, session_id: str, verb: Literal["stop", "pause", "resume", "fork"]) -> JSON:
        return self.call(calls.session_action(session_id, verb))

"""Every ashd (Ash-compatible) REST route as a :class:`Call`: method, path, body, and how to
unwrap the answer. Written once here; :class:`~ashd.client.AshdClient` (blocking) and
:class:`~ashd.client.AsyncAshdClient` (asyncio) only execute them.

Pure code: building a Call sends nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

JSON = dict[str, Any]
Shape = Literal["object", "list", "none", "whole", "bytes"]


@dataclass(frozen=True)
class Call:
    """One request. ``key`` names the envelope to unwrap (``{"session": {...}}``);
    ``shape`` says what the caller gets: that object, that list, nothing, the whole
    answer, or the raw body bytes. ``slow``: may start or persist a sandbox."""

    method: str
    path: str
    body: JSON | None = None
    query: Mapping[str, str | int | None] = field(default_factory=dict)
    key: str = ""
    shape: Shape = "whole"
    slow: bool = False


def seg(value: str) -> str:
    """One path segment, escaped (a ``/`` inside is escaped too)."""
    return quote(value, safe="")


def file_path(value: str) -> str:
    """A relative file path inside a URL, its ``/`` kept."""
    return quote(value.lstrip("/"), safe="/")


def camel_case(name: str) -> str:
    """``system_prompt`` -> ``systemPrompt``; camelCase input is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_options(options: Mapping[str, Any]) -> JSON:
    """Map snake_case keyword options to Ash's camelCase fields, dropping Nones."""
    return {camel_case(key): value for key, value in options.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _obj(method: str, path: str, key: str, body: JSON | None = None, **kw: Any) -> Call:
    return Call(method, path, body, key=key, shape="object", **kw)


def _list(path: str, key: str, **query: str | int | None) -> Call:
    return Call("GET", path, None, query, key=key, shape="list")


# -- health, usage ------------------------------------------------------------------

def health() -> Call:
    return Call("GET", "/health")


def usage(filters: Mapping[str, str | int | None], stats: bool = False) -> Call:
    """``filters``: session_id, agent_name, after, before, limit (snake or camel case)."""
    query = {camel_case(k): v for k, v in filters.items()}
    if stats:
        return Call("GET", "/api/usage/stats", None, query, key="stats", shape="object")
    return _list("/api/usage", "events", **query)


def analytics(after: str | None = None, before: str | None = None) -> Call:
    """``GET /api/analytics``: the tenant's figures, optionally between two ISO-8601 times."""
    return Call("GET", "/api/analytics", None, {"after": after, "before": before})


# -- agents -------------------------------------------------------------------------

def _agent(name: str, rest: str = "") -> str:
    return f"/api/agents/{seg(name)}{rest}"


def deploy_agent(name: str, path: str | None = None, files: Sequence[Mapping[str, str]] | None = None,
                 env: Mapping[str, str] | None = None, system_prompt: str | None = None) -> Call:
    body: JSON = {"name": name}
    if path is not None:
        body["path"] = path
    if files is not None:
        body["files"] = [dict(item) for item in files]
    if env:
        body["env"] = dict(env)
    if system_prompt is not None:
        body["systemPrompt"] = system_prompt
    return _obj("POST", "/api/agents", "agent", body, slow=True)


def list_agents() -> Call:
    return _list("/api/agents", "agents")


def get_agent(name: str) -> Call:
    return _obj("GET", _agent(name), "agent")


def update_agent(name: str, env: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None) -> Call:
    body = {k: dict(v) for k, v in (("env", env), ("config", config)) if v is not None}
    return _obj("PATCH", _agent(name), "agent", body)


def delete_agent(name: str) -> Call:
    return Call("DELETE", _agent(name), shape="none", slow=True)


def agent_config(name: str, patch: Mapping[str, Any] | None = None) -> Call:
    if patch is None:
        return _obj("GET", _agent(name, "/config"), "config")
    return _obj("PATCH", _agent(name, "/config"), "config", dict(patch))


def list_agent_files(name: str) -> Call:
    return _list(_agent(name, "/files"), "files")


def read_agent_file(name: str, path: str) -> Call:
    return Call("GET", _agent(name, f"/files/{file_path(path)}"), shape="bytes", query={"format": "raw"})


def write_agent_files(name: str, files: Mapping[str, bytes]) -> Call:
    items = [{"path": p, "content": b64(data)} for p, data in files.items()]
    return Call("POST", _agent(name, "/files"), {"files": items})


def delete_agent_file(name: str, path: str) -> Call:
    return Call("DELETE", _agent(name, f"/files/{file_path(path)}"))


def agent_versions(name: str) -> Call:
    return _list(_agent(name, "/versions"), "versions")


def create_agent_version(name: str, **fields: Any) -> Call:
    return _obj("POST", _agent(name, "/versions"), "version", camel_options(fields))


def agent_version(name: str, number: int | str, patch: Mapping[str, Any] | None = None,
                  delete: bool = False) -> Call:
    path = _agent(name, f"/versions/{seg(str(number))}")
    if delete:
        return Call("DELETE", path, shape="none")
    if patch is not None:
        return _obj("PATCH", path, "version", camel_options(patch))
    return _obj("GET", path, "version")


def activate_agent_version(name: str, number: int | str) -> Call:
    return Call("POST", _agent(name, f"/versions/{seg(str(number))}/activate"))


# -- sessions -----------------------------------------------------------------------

def _session(session_id: str, rest: str = "") -> str:
    return f"/api/sessions/{seg(session_id)}{rest}"


def create_session(agent: str, **options: Any) -> Call:
    return _obj("POST", "/api/sessions", "session", {"agent": agent, **camel_options(options)}, slow=True)


def list_sessions(agent: str | None = None, status: str | None = None) -> Call:
    return _list("/api/sessions", "sessions", agent=agent, status=status)


def get_session(session_id: str) -> Call:
    return _obj("GET", _session(session_id), "session")


def end_session(session_id: str) -> Call:
    return _obj("DELETE", _session(session_id), "session", slow=True)


def session_action(session_id: str, verb: Literal["stop", "pause", "resume", "fork"]) -> Call:
    return _obj("POST", _session(session_id, f"/{verb}"), "session", slow=True)


def configure_session(session_id: str, **fields: Any) -> Call:
    return _obj("PATCH", _session(session_id, "/config"), "session", camel_options(fields), slow=True)


def send_message(session_id: str, content: str | Sequence[Mapping[str, Any]], include_partial: bool,
                 options: Mapping[str, Any]) -> Call:
    """The POST that runs one turn (its answer is a stream: see the clients' ``send_message``)."""
    body: JSON = {
        "content": content if isinstance(content, str) else [dict(b) for b in content],
        "includePartialMessages": include_partial,
        **camel_options(options),
    }
    return Call("POST", _session(session_id, "/messages"), body)


def interrupt(session_id: str) -> Call:
    return Call("POST", _session(session_id, "/interrupt"))


def list_messages(session_id: str, limit: int | None = None, after: int | None = None) -> Call:
    return _list(_session(session_id, "/messages"), "messages", limit=limit, after=after)


def list_events(session_id: str, limit: int | None = None, after: int | None = None,
                type: str | None = None) -> Call:
    return _list(_session(session_id, "/events"), "events", limit=limit, after=after, type=type)


def logs(session_id: str, after: int | None = None) -> Call:
    return Call("GET", _session(session_id, "/logs"), None, {"after": after})


def exec_command(session_id: str, command: str, timeout_ms: int | None = None) -> Call:
    body: JSON = {"command": command}
    if timeout_ms is not None:
        body["timeout"] = timeout_ms
    return Call("POST", _session(session_id, "/exec"), body)


def list_files(session_id: str, include_hidden: bool = True) -> Call:
    return Call("GET", _session(session_id, "/files"), None,
                {"includeHidden": "true" if include_hidden else "false"})


def read_file(session_id: str, path: str) -> Call:
    return Call("GET", _session(session_id, f"/files/{file_path(path)}"), shape="bytes")


def write_files(session_id: str, files: Mapping[str, bytes], target: str | None = None) -> Call:
    body: JSON = {"files": [{"path": p, "content": b64(data)} for p, data in files.items()]}
    if target is not None:
        body["targetPath"] = target
    return _list_post(_session(session_id, "/files"), "files", body)


def _list_post(path: str, key: str, body: JSON) -> Call:
    return Call("POST", path, body, key=key, shape="list")


def delete_file(session_id: str, path: str) -> Call:
    return Call("DELETE", _session(session_id, f"/files/{file_path(path)}"))


def download_workspace(session_id: str) -> Call:
    return Call("GET", _session(session_id, "/workspace"), shape="bytes", slow=True)


def upload_workspace(session_id: str, bundle: bytes) -> Call:
    return Call("POST", _session(session_id, "/workspace"), {"bundle": b64(bundle)}, slow=True)


def add_attachment(session_id: str, filename: str, data: bytes, mime_type: str | None = None) -> Call:
    body = {"filename": filename, "content": b64(data), **camel_options({"mime_type": mime_type})}
    return _obj("POST", _session(session_id, "/attachments"), "attachment", body)


def list_attachments(session_id: str) -> Call:
    return _list(_session(session_id, "/attachments"), "attachments")


def read_attachment(attachment_id: str) -> Call:
    return Call("GET", f"/api/attachments/{seg(attachment_id)}", shape="bytes")


def delete_attachment(attachment_id: str) -> Call:
    return Call("DELETE", f"/api/attachments/{seg(attachment_id)}", shape="none")


# -- keys, credentials, queue -------------------------------------------------------

def list_keys() -> Call:
    return _list("/api/api-keys", "keys")


def create_key(label: str | None = None, scopes: Sequence[str] | None = None) -> Call:
    body = camel_options({"label": label, "scopes": list(scopes) if scopes else None})
    return Call("POST", "/api/api-keys", body)


def delete_key(key_id: str) -> Call:
    return Call("DELETE", f"/api/api-keys/{seg(key_id)}", shape="none")


def list_credentials() -> Call:
    return _list("/api/credentials", "credentials")


def add_credential(type: str, key: str, label: str | None = None) -> Call:
    return _obj("POST", "/api/credentials", "credential", {"type": type, "key": key,
                                                           **camel_options({"label": label})})


def delete_credential(credential_id: str) -> Call:
    return Call("DELETE", f"/api/credentials/{seg(credential_id)}", shape="none")


def enqueue(agent_name: str, prompt: str, **options: Any) -> Call:
    return _obj("POST", "/api/queue", "item", {"agentName": agent_name, "prompt": prompt,
                                                **camel_options(options)})


def list_queue(status: str | None = None, limit: int | None = None) -> Call:
    return _list("/api/queue", "items", status=status, limit=limit)


def queue_stats() -> Call:
    return _obj("GET", "/api/queue/stats", "stats")


def queue_item(item_id: str, cancel: bool = False) -> Call:
    return _obj("DELETE" if cancel else "GET", f"/api/queue/{seg(item_id)}", "item")


# -- the runner registry (coordinators; the operator's) -----------------------------

def list_runners() -> Call:
    """``{count, hasLocal, runners}``."""
    return Call("GET", "/api/internal/runners")


def drain_runner(runner_id: str, draining: bool = True) -> Call:
    verb = "drain" if draining else "undrain"
    return _obj("POST", f"/api/internal/runners/{seg(runner_id)}/{verb}", "runner")


def unwrap(call: Call, answer: JSON) -> Any:
    """What the caller of ``call`` gets from the decoded JSON ``answer``.

    Raises ValueError when the answer lacks the envelope the route promises.
    """
    if call.shape == "none":
        return None
    if call.shape == "whole":
        return answer
    value = answer.get(call.key)
    wanted = dict if call.shape == "object" else list
    if not isinstance(value, wanted):
        raise ValueError(f"the server's answer has no {call.key!r} {'object' if wanted is dict else 'list'}")
    return value

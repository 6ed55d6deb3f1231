"""What a Messages API request may ask the model provider to do on the agent's behalf (pure).

The model proxy forwards with the operator's key, and the provider can act *outside* the
sandbox for whoever holds that key: server-side tools (``web_search_…``, ``web_fetch_…``,
``code_execution_…``, ``tool_search_…``, ``mcp_toolset``), the MCP connector
(``mcp_servers``), code containers (``container``), references to files stored with the
provider (``source.type: "file"``, ``file_id``, ``container_upload``) and URL sources the
provider fetches itself (``source.type: "url"``). An agent could use any of them to reach
the network around ashd's egress allowlist, or to read the operator's stored files. So
every request body is read whole (at most ``max_bytes``), parsed, and refused (400, naming
the field) when it asks for any of them that the operator did not allow by name:

- a tool whose ``type`` is set and is not ``custom``, matched on the type without its date
  suffix (``web_search_20250305`` -> ``web_search``). The CLI's own tools have no type.
  Anthropic-defined *client* tools (``bash_…``, ``text_editor_…``, ``computer_…``) are
  refused too: from the type alone the proxy cannot tell a new server tool from them;
- ``mcp_servers`` (allowed by ``mcp_servers``) and ``container`` (by ``container``) when set;
- in ``messages`` and ``system``, at any depth of ``content``: a ``file_id``, a
  ``container_upload`` block or a ``file`` source (by ``files``), a ``url`` source (by
  ``urls``); any other source type but the inline ones (``base64``, ``text``, ``content``)
  is refused outright.

Refused, not stripped: the CLI never sends any of these in its own turns (its WebSearch tool
sends a side request whose only tool is ``web_search_…``; stripping that tool would leave
a request that cannot do what it asks), so a refusal is visible and honest.

The body is forwarded as received, so the upstream must read it as this check did: it must
be UTF-8, and an object with a duplicate key is refused (parsers disagree on which value
wins: ``"mcp_servers": [...], "mcp_servers": null`` would pass a last-wins check and reach a
first-wins upstream). Refusing duplicates in the parse costs less than serialising the
body again.
``anthropic-beta`` values that enable a feature the policy does not allow are dropped from
the header (:func:`filter_betas`): the body is the gate, the header is defence in depth, and
a CLI that names such a beta routinely keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ashd.body_policy import DATE_SUFFIX, BodyPolicy
from ashd.proxy.body_memo import BodyMemo, Unexpected, read

INLINE_SOURCES = frozenset({"base64", "text", "content"})
# anthropic-beta prefix -> the allowable name that beta enables
FEATURE_BETAS = (("web-fetch-", "web_fetch"), ("web-search-", "web_search"), ("code-execution-", "code_execution"),
                 ("mcp-client-", "mcp_servers"), ("files-api-", "files"), ("skills-", "container"),
                 ("computer-use-", "computer"))


class BodyRefused(Exception):
    """The request body is not forwarded; ``status`` (400 or 413) and ``kind`` (Anthropic's
    error type) are the answer, ``feature`` the refused name (None for malformed bodies)."""

    def __init__(self, status: int, message: str, feature: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = "request_too_large" if status == 413 else "invalid_request_error"
        self.message = message
        self.feature = feature


def check_body(raw: bytes, policy: BodyPolicy, memo: BodyMemo | None = None) -> None:
    """Check a whole request body; returns when it may be forwarded as is. Raises BodyRefused.
    ``memo``: the sandbox's last body that passed; what this one repeats of it is not parsed
    or checked again (:mod:`ashd.proxy.body_memo`), and this one becomes it if it passes."""
    if len(raw) > policy.max_bytes:
        raise too_large(policy)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, "the request body is not valid JSON: it is not UTF-8") from None
    if memo is not None:
        try:
            reading = read(text, memo, _DECODER.raw_decode)
        except (Unexpected, BodyRefused):
            pass  # checked whole below, which gives the whole check's answer
        else:
            _check_doc(reading.doc, policy)
            reading.remember()
            return
    try:
        doc = json.loads(text, object_pairs_hook=_object)
    except ValueError as exc:
        raise BodyRefused(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise BodyRefused(400, "the request body must be a JSON object")
    _check_doc(doc, policy)


def _check_doc(doc: dict[str, Any], policy: BodyPolicy) -> None:
    _check_fields(doc, policy)
    _check_tools(doc.get("tools"), policy)
    for i, message in enumerate(_list(doc.get("messages"), "messages")):
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            _check_blocks(message["content"], f"messages[{i}].content", policy)
    if isinstance(doc.get("system"), list):
        _check_blocks(doc["system"], "system", policy)


def too_large(policy: BodyPolicy) -> BodyRefused:
    return BodyRefused(413, f"the request body is larger than {policy.max_bytes} bytes "
                            "(the operator's proxy.max_request_bytes, ASH_PROXY_MAX_REQUEST_BYTES)")


def filter_betas(values: Iterable[str], policy: BodyPolicy) -> str | None:
    """The ``anthropic-beta`` header value to forward (all given headers joined), without the
    betas of features the policy does not allow; None when nothing is left."""
    kept = [beta for value in values for beta in (b.strip() for b in value.split(","))
            if beta and _beta_allowed(beta, policy)]
    return ",".join(kept) or None


def _beta_allowed(beta: str, policy: BodyPolicy) -> bool:
    lowered = beta.lower()
    return all(not lowered.startswith(prefix) or name in policy.allowed for prefix, name in FEATURE_BETAS)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BodyRefused(400, f"the request body repeats the key {_duplicate(pairs)[:80]!r} in one object; the "
                               "model proxy forwards only bodies every JSON parser reads the same way")
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def _duplicate(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _check_fields(doc: dict[str, Any], policy: BodyPolicy) -> None:
    for field, what in (("mcp_servers", "asks the model provider to connect to MCP servers"),
                        ("container", "asks for a code execution container at the model provider")):
        if doc.get(field) and field not in policy.allowed:
            raise _refused(f"{field} {what}", field)


def _check_tools(tools: object, policy: BodyPolicy) -> None:
    for i, tool in enumerate(_list(tools, "tools")):
        if not isinstance(tool, dict):
            raise BodyRefused(400, f"tools[{i}] must be an object")
        kind = tool.get("type")
        if kind is None or kind == "custom":
            continue
        name = DATE_SUFFIX.sub("", kind) if isinstance(kind, str) else ""
        if name not in policy.allowed:
            raise _refused(f"tools[{i}].type {str(kind)[:80]!r} is a tool the model provider "
                           "defines and may run itself, outside the sandbox", name or None)


def _check_blocks(blocks: list[Any], where: str, policy: BodyPolicy) -> None:
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        here = f"{where}[{i}]"
        if ("file_id" in block or block.get("type") == "container_upload") and "files" not in policy.allowed:
            raise _refused(f"{here} refers to a file stored with the model provider", "files")
        source = block.get("source")
        if isinstance(source, dict):
            _check_source(source, f"{here}.source", policy)
            if isinstance(source.get("content"), list):
                _check_blocks(source["content"], f"{here}.source.content", policy)
        if isinstance(block.get("content"), list):
            _check_blocks(block["content"], f"{here}.content", policy)


def _check_source(source: dict[str, Any], where: str, policy: BodyPolicy) -> None:
    kind = source.get("type")
    if (kind == "file" or "file_id" in source) and "files" not in policy.allowed:
        raise _refused(f"{where} refers to a file stored with the model provider", "files")
    if kind == "url" and "urls" not in policy.allowed:
        raise _refused(f"{where} is a URL the model provider would fetch, outside the sandbox", "urls")
    if kind not in INLINE_SOURCES and kind not in ("file", "url"):
        raise BodyRefused(400, f"the model proxy refused this request: {where}.type {str(kind)[:40]!r} is not a "
                               f"source type it forwards (only {', '.join(sorted(INLINE_SOURCES))}, file, url)")


def _list(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyRefused(400, f"{field} must be a list")
    return value


def _refused(what: str, feature: str | None) -> BodyRefused:
    allow = (f'; the operator can allow it with proxy.allowed_server_tools = "{feature}" '
             "(ASH_PROXY_ALLOWED_SERVER_TOOLS)") if feature else ""
    return BodyRefused(400, f"the ashd model proxy refused this request: {what}{allow}", feature)

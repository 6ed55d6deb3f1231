"""Plain-text formatting of API objects for humans: one-line summaries,
tables, key/value listings and the text of stored SDK messages.

Pure functions of their arguments; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SUMMARY_LIMIT = 100
_SUMMARY_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")


def one_line(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Collapse whitespace and cut to ``limit`` characters (with an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def sentence_case(message: str) -> str:
    """Lower-case a leading capitalised word for ``error: ...`` lines.

    ``'Agent "x" not found'`` -> ``'agent "x" not found'``; ``"API key ..."`` stays.
    """
    return message[0].lower() + message[1:] if message[1:2].islower() else message


def summarize_input(value: Any) -> str:
    """The most telling part of a tool input (``command`` for Bash, ...)."""
    if isinstance(value, Mapping):
        for key in _SUMMARY_KEYS:
            if isinstance(value.get(key), str):
                return one_line(value[key])
    return one_line(value if isinstance(value, str) else json.dumps(value))


def block_text(content: Any) -> str:
    """Text of a string or of a list of content blocks (non-text shown as ``[type]``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content)
    parts = []
    for block in content:
        if isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, Mapping) and block.get("type") == "tool_use":
            parts.append(f"[tool] {block.get('name')}: {summarize_input(block.get('input'))}")
        elif isinstance(block, Mapping):
            parts.append(f"[{block.get('type')}]")
    return "\n".join(parts)


def assistant_texts(message: Mapping[str, Any]) -> list[str]:
    """Text blocks of a raw SDK ``assistant`` message."""
    inner = message.get("message")
    blocks = inner.get("content") if isinstance(inner, Mapping) else None
    if not isinstance(blocks, list):
        return []
    return [
        str(b.get("text", "")) for b in blocks if isinstance(b, Mapping) and b.get("type") == "text"
    ]


def failure_text(result: Mapping[str, Any]) -> str:
    """What went wrong, from an SDK ``result`` message with ``is_error``."""
    if result.get("subtype") not in (None, "success"):
        return str(result["subtype"])
    return str(result.get("result") or "error result")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; ``-`` for missing cells."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def format_pairs(obj: Mapping[str, Any]) -> str:
    """One ``key  value`` line per field; nested values as compact JSON."""
    width = max((len(key) for key in obj), default=0)
    return "\n".join(
        f"{key.ljust(width)}  {json.dumps(v) if isinstance(v, dict | list) else v}"
        for key, v in obj.items()
    )


def message_text(content: str) -> str:
    """Readable text of a stored message (``content`` is a JSON string)."""
    try:
        message = json.loads(content)
    except ValueError:
        return content
    if not isinstance(message, dict):
        return content
    if message.get("type") == "assistant":
        inner = message.get("message")
        return block_text(inner.get("content") if isinstance(inner, Mapping) else None)
    if message.get("type") == "result":
        return str(message.get("result", ""))
    return block_text(message.get("content"))


def message_line(message: Mapping[str, Any]) -> str:
    """One stored message as ``#<sequence> <type>: <text>``.

    The SDK's ``result`` message (stored with role ``assistant``, like Ash) repeats the
    reply's text, so it is shown as ``result`` with its outcome, not the text again. The
    type comes from the server's ``type`` field, else from the content (servers without it).
    """
    content = str(message.get("content", ""))
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    body = parsed if isinstance(parsed, dict) else {}
    kind = message.get("type") or body.get("type") or message.get("role")
    text = result_outcome(body) if kind == "result" else message_text(content)
    return f"#{message.get('sequence')} {kind}: {text}"


def result_outcome(result: Mapping[str, Any]) -> str:
    """How a turn ended, from an SDK ``result`` message: ``done (1 turn, 0.4 s, $0.0012)``."""
    if result.get("is_error"):
        return f"failed: {failure_text(result)}"
    details = []
    turns = result.get("num_turns")
    if isinstance(turns, int):
        details.append(f"{turns} turn" + ("" if turns == 1 else "s"))
    if isinstance(result.get("duration_ms"), int | float):
        details.append(f"{result['duration_ms'] / 1000:.1f} s")
    if isinstance(result.get("total_cost_usd"), int | float):
        details.append(f"${result['total_cost_usd']:.4f}")
    return "done" + (f" ({', '.join(details)})" if details else "")


def format_isolation(report: Mapping[str, Any]) -> str:
    """The server's isolation report as a checklist an operator can act on."""
    if not report:
        return "the server reports no isolation information (an older ashd?)"
    lines = [f"launcher: {report.get('launcher', '?')}"]
    for name, layer in (report.get("layers") or {}).items():
        mark = "ok " if layer.get("active") else "-- "
        detail = ", ".join(f"{k}={v}" for k, v in layer.items() if k != "active")
        lines.append(f"  {mark}{name}" + (f"  ({detail})" if detail else ""))
    floor = ", ".join(report.get("floor") or [])
    if report.get("meetsFloor"):
        lines.append(f"floor ({floor}): met")
    else:
        lines.append(f"floor ({floor}): NOT met; missing: {', '.join(report.get('missing') or [])}")
    return "\n".join(lines)


def format_start_health(health: Mapping[str, Any]) -> str:
    """Whether sandboxes start (``status: ok``), or why not and the last failure."""
    status = health.get("status", "?")
    if status == "ok":
        return "sandbox starts: ok"
    lines = [f"sandbox starts: {status.upper()}: {health.get('statusReason') or 'no reason given'}"]
    last = health.get("lastStartFailure")
    if isinstance(last, Mapping):
        where = f" (session {last['sessionId']})" if last.get("sessionId") else ""
        lines.append(f"  last failure at {last.get('at', '?')}{where}: {last.get('reason', '?')}")
    return "\n".join(lines)


def format_supervision(supervision: Mapping[str, Any]) -> str:
    """Restarts per child of the actor tree, and the children it gave up on."""
    restarts = supervision.get("restarts") or {}
    counts = ", ".join(f"{child} {n}" for child, n in sorted(restarts.items())) or "none"
    lines = [f"supervision: restarts: {counts}"]
    for failed in supervision.get("failedChildren") or []:
        lines.append(f"  FAILED {failed.get('child', '?')} at {failed.get('at', '?')}: {failed.get('reason', '?')}")
    if supervision.get("gaveUp"):
        lines.append(f"  the tree gave up: {supervision['gaveUp']}")
    return "\n".join(lines)

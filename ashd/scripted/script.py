"""Script files: canned replies chosen by prompt substring instead of prompt directives.

A script file is a JSON list of ``{"match": "substring" | null, "reply": "directive
text"}`` objects. For each request the first entry whose ``match`` occurs in the prompt
(``null`` matches every prompt) supplies the directive text. Entries are never consumed,
so retries and tool round trips see the same entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class ScriptError(ValueError):
    """The script file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ScriptEntry:
    """One canned reply: ``reply`` is used when ``match`` is None or occurs in the prompt."""

    match: str | None
    reply: str

    def matches(self, prompt: str) -> bool:
        """True when this entry applies to ``prompt`` (case-sensitive substring)."""
        return self.match is None or self.match in prompt


def load_script(path: Path) -> tuple[ScriptEntry, ...]:
    """Read and validate a script file. Blocks on file I/O; raises :class:`ScriptError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScriptError(f"script {path}: cannot read: {exc}") from exc
    return parse_script(data, str(path))


def parse_script(data: object, origin: str = "script") -> tuple[ScriptEntry, ...]:
    """Validate already-decoded script JSON; raises :class:`ScriptError` naming the entry."""
    if not isinstance(data, list):
        raise ScriptError(f"{origin}: expected a JSON list of {{match, reply}} objects")
    entries = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("reply"), str):
            raise ScriptError(f"{origin}: entry {index} needs a string 'reply'")
        match = item.get("match")
        if match is not None and not isinstance(match, str):
            raise ScriptError(f"{origin}: entry {index} 'match' must be a string or null")
        entries.append(ScriptEntry(match, item["reply"]))
    return tuple(entries)


def find_reply(entries: tuple[ScriptEntry, ...], prompt: str) -> str | None:
    """The ``reply`` of the first entry matching ``prompt``, or None."""
    for entry in entries:
        if entry.matches(prompt):
            return entry.reply
    return None

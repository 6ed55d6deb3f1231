"""Scripted model: a Messages-API-compatible server answering from directives in prompts.

Point the Claude Code CLI's ``ANTHROPIC_BASE_URL`` at it to run agents offline and
deterministically. See ``docs/scripted-model.md`` for the directive language.
"""

from ashd.scripted.recorder import RecordedRequest
from ashd.scripted.script import ScriptEntry
from ashd.scripted.server import ScriptedModel

__all__ = ["RecordedRequest", "ScriptEntry", "ScriptedModel"]

"""The assistant's reply to one turn, gathered from its stream of events.

Pure code: feed every event of a turn to :meth:`Reply.add`, then read
:attr:`Reply.text` (the whole assistant text) and :attr:`Reply.failure`
(why the turn failed, or ``None``). Mirrors what ``ashctl session send``
prints: streamed deltas, else the text of each assistant message, else the
turn's final result.
"""

from __future__ import annotations

from typing import Any

from ashd.client.events import Error, Message, StreamEvent, TextDelta, TurnComplete
from ashd.client.formatting import assistant_texts, failure_text


class Reply:
    """Accumulates one turn's assistant text; single-threaded."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._deltas_since_assistant = False
        self._result: str | None = None
        self.failure: str | None = None

    @property
    def text(self) -> str:
        """The assistant text so far (the turn's result if no text was streamed)."""
        text = "".join(self._parts)
        return text if text or self._result is None else self._result

    def add(self, event: StreamEvent) -> None:
        """Take one event of the turn; unknown events are ignored."""
        match event:
            case TextDelta(delta=delta):
                self._deltas_since_assistant = True
                self._parts.append(delta)
            case Message(type="assistant"):
                if not self._deltas_since_assistant:  # the server sent no partials for it
                    self._parts.extend(assistant_texts(_data(event)))
                self._deltas_since_assistant = False
            case Message(type="result") if _data(event).get("is_error"):
                self.failure = f"the turn failed: {failure_text(_data(event))}"
            case TurnComplete(result=result):
                self._result = result
            case Error(error=error):
                self.failure = error or "the turn failed (the server sent an error event)"


def _data(event: StreamEvent) -> dict[str, Any]:
    return event.data if isinstance(event.data, dict) else {}

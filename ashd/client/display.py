"""Rendering of a streamed turn for a terminal (human text) or a pipe (NDJSON).

Single-threaded; every writer flushes after each event so a human sees text
as it is generated. Answer text goes to ``out``; everything else (tool calls,
results, thinking, errors) goes to ``err`` so ``out`` stays the bare answer.
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from ashd.client.formatting import assistant_texts, block_text, failure_text, one_line, summarize_input
from ashd.client.sse import SSEEvent

_DIM, _RESET = "\x1b[2m", "\x1b[0m"


def is_failed_result(event: SSEEvent) -> bool:
    """True for a ``message`` event carrying an SDK ``result`` with ``is_error``."""
    data = event.data
    return (
        event.event == "message"
        and isinstance(data, dict)
        and data.get("type") == "result"
        and bool(data.get("is_error"))
    )


class StreamPrinter:
    """Human rendering of one turn's events (see module docstring).

    ``interleaved`` says ``out`` and ``err`` reach the same terminal or file: a
    line on ``err`` then first ends a half-written line of ``out``. ``failed``
    becomes true on an ``error`` event or an SDK result with ``is_error``.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        show_thinking: bool = False,
        color: bool = False,
        interleaved: bool = False,
    ) -> None:
        self.out, self.err = out, err
        self.show_thinking, self.color, self.interleaved = show_thinking, color, interleaved
        self.failed = False
        self._printed_text = False
        self._deltas_since_assistant = False
        self._out_mid_line = False
        self._err_mid_line = False
        self._break_before_text = False
        self._pending_thinking: str | None = None
        self._thinking_streamed = False

    def handle(self, event: SSEEvent) -> None:
        """Render one event; unknown events are ignored."""
        data = event.data if isinstance(event.data, dict) else {}
        if self._pending_thinking is not None:
            self._resolve_thinking(partial=event.event == "message" and data.get("type") == "stream_event")
        handler = {
            "text_delta": self._on_text_delta,
            "thinking_delta": self._on_thinking_delta,
            "tool_use": self._on_tool_use,
            "tool_result": self._on_tool_result,
            "message": self._on_message,
            "turn_complete": self._on_turn_complete,
            "error": self._on_error,
        }.get(event.event)
        if handler is not None:
            handler(data)

    def _on_text_delta(self, data: dict[str, Any]) -> None:
        self._deltas_since_assistant = True
        self._text(str(data.get("delta", "")))

    def _on_thinking_delta(self, data: dict[str, Any]) -> None:
        if self.show_thinking:  # held until the next event says where it came from
            self._pending_thinking = str(data.get("delta", ""))

    def _on_tool_use(self, data: dict[str, Any]) -> None:
        self._break_before_text = self._out_mid_line
        self._line(f"[tool] {data.get('name')}: {summarize_input(data.get('input'))}")

    def _on_tool_result(self, data: dict[str, Any]) -> None:
        label = "[result error]" if data.get("is_error") else "[result]"
        self._line(f"{label} {one_line(block_text(data.get('content')))}")

    def _on_message(self, data: dict[str, Any]) -> None:
        if data.get("type") == "assistant":
            if not self._deltas_since_assistant:  # the server sent no partials for it
                for text in assistant_texts(data):
                    self._text(text)
            self._deltas_since_assistant = self._thinking_streamed = False
        elif data.get("type") == "result" and data.get("is_error"):
            self.failed = True  # e.g. the model API failed, or max turns reached
            self._line(f"error: the turn failed: {one_line(failure_text(data))}", dim=False)

    def _on_turn_complete(self, data: dict[str, Any]) -> None:
        result = data.get("result")
        if not self._printed_text and isinstance(result, str) and result:
            self._text(result)  # last resort: neither deltas nor assistant text came

    def _on_error(self, data: dict[str, Any]) -> None:
        self.failed = True
        self._line(f"error: {data.get('error', 'unknown error')}", dim=False)

    def finish(self) -> None:
        """End half-written lines so the shell prompt starts on its own line."""
        if self._pending_thinking is not None:
            self._resolve_thinking(partial=False)
        if self._err_mid_line:
            self._write(self.err, "\n")
            self._err_mid_line = False
        if self._out_mid_line:
            self._write(self.out, "\n")
            self._out_mid_line = False

    def _text(self, text: str) -> None:
        if not text:
            return
        if self._err_mid_line:
            self._write(self.err, "\n")
            self._err_mid_line = False
        if self._break_before_text and self._out_mid_line:
            text = "\n" + text
        # State first, then I/O: a Ctrl-C landing right after the write must
        # still find the line open, so finish() can end it.
        self._break_before_text = False
        self._printed_text = True
        self._out_mid_line = not text.endswith("\n")
        self._write(self.out, text)

    def _resolve_thinking(self, partial: bool) -> None:
        # Ash emits thinking twice with partials on: as deltas (each followed by
        # its `message` of type stream_event) and again, whole, from the
        # assistant message's thinking block. Show the whole one only when no
        # deltas were streamed for this assistant message.
        text, self._pending_thinking = self._pending_thinking or "", None
        if partial:
            self._thinking_streamed = True
        elif self._thinking_streamed:
            return
        self._thinking(text)

    def _thinking(self, text: str) -> None:
        if not text:
            return
        self._end_out_line_for_terminal()
        self._err_mid_line = not text.endswith("\n")
        self._write(self.err, f"{_DIM}{text}{_RESET}" if self.color else text)

    def _line(self, line: str, dim: bool = True) -> None:
        self._end_out_line_for_terminal()
        prefix = "\n" if self._err_mid_line else ""
        self._err_mid_line = False
        self._write(self.err, prefix + (f"{_DIM}{line}{_RESET}" if self.color and dim else line) + "\n")

    def _end_out_line_for_terminal(self) -> None:
        if self.interleaved and self._out_mid_line:
            self._write(self.out, "\n")
            self._out_mid_line = False

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()


class NdjsonPrinter:
    """``--json`` rendering: one ``{"event", "data", "id"}`` object per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = False

    def handle(self, event: SSEEvent) -> None:
        """Write one event as a JSON line."""
        self.failed = self.failed or event.event == "error" or is_failed_result(event)
        record = {"event": event.event, "data": event.data, "id": event.id}
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.out.flush()

    def finish(self) -> None:
        """Nothing to close: every line is complete."""


def make_printer(
    out: TextIO, err: TextIO, *, as_json: bool, show_thinking: bool, no_color: bool
) -> StreamPrinter | NdjsonPrinter:
    """The printer for a turn: NDJSON, or human text (colour only on a terminal;
    line interleaving when stdout and stderr end up in the same place)."""
    if as_json:
        return NdjsonPrinter(out)
    return StreamPrinter(
        out,
        err,
        show_thinking=show_thinking,
        color=err.isatty() and not no_color,
        interleaved=same_file(out, err),
    )


def same_file(a: TextIO, b: TextIO) -> bool:
    """True if both streams write to one file, pipe or terminal (``2>&1``)."""
    try:
        one, two = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation for in-memory streams
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)

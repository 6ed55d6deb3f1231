"""Usage metering from the Messages API responses the model proxy relays (pure).

Streaming responses: ``message_start`` carries the model and the input/cache usage,
``message_delta`` the cumulative output tokens. Non-streaming: the JSON body's ``usage``.
The meter reads a copy of the decoded bytes; it never alters or delays the stream.

The meter is live: :meth:`Meter.so_far` is the usage of what it has seen up to now, so a
stream cut early (client gone, budget crossed) is charged for what was relayed. The real
API reports output tokens only at the end (``message_delta``); until then they are
estimated from the generated characters seen (text, thinking, tool input): one token per
:data:`CHARS_PER_TOKEN` characters, rounded up, and never less than ``message_start`` said.
Prices are US dollars per million tokens; cache writes cost 1.25x input, cache reads 0.1x.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_JSON_BYTES = 8 * 1024 * 1024

# Substring of the model id -> (input, output) USD per million tokens. First match wins.
PRICES: tuple[tuple[str, float, float], ...] = (
    ("opus-4-5", 5.0, 25.0), ("opus-4-6", 5.0, 25.0), ("opus", 15.0, 75.0),
    ("sonnet", 3.0, 15.0),
    ("haiku-4", 1.0, 5.0), ("3-5-haiku", 0.8, 4.0), ("haiku", 0.25, 1.25),
)
DEFAULT_PRICE = (3.0, 15.0)
CHARS_PER_TOKEN = 4
DELTA_FIELDS = ("text", "thinking", "partial_json")
# The data line of a content_block_delta without its payload text:
# data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}
DELTA_OVERHEAD = 86  # the shortest: text_delta at index 0 (thinking_delta 94, input_json_delta 100)


@dataclass(frozen=True)
class Usage:
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    tool_calls: int = 0

    @property
    def cost_usd(self) -> float:
        inp, out = price(self.model)
        return (self.input_tokens * inp + self.output_tokens * out
                + self.cache_creation_tokens * inp * 1.25 + self.cache_read_tokens * inp * 0.1) / 1e6


def price(model: str) -> tuple[float, float]:
    """(input, output) USD per million tokens for a model id."""
    return next(((i, o) for key, i, o in PRICES if key in model), DEFAULT_PRICE)


class Meter:
    """Feed it the decoded response body; ``cost_so_far()``/``so_far()`` at any time,
    ``result()`` at the end. Called for every relayed piece, so kept cheap: only the few
    events that carry usage or start a block are parsed; a ``content_block_delta`` (named by
    its ``event:`` line, as the API always sends it) is counted by the length of its data."""

    def __init__(self, streaming: bool) -> None:
        self._streaming = streaming
        self._buf = bytearray()
        self._model = ""
        self._price = DEFAULT_PRICE
        self._counts = {"input_tokens": 0, "output_tokens": 0,
                        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        self._seen = False
        self._final = False  # message_delta reported the output tokens
        self._chars = 0
        self._tools = 0
        self._name = b""  # the current event's name (its "event:" line)
        self.stopped = False  # message_stop seen: the reply is complete
        self.at_boundary = True  # what was fed ends between two SSE events

    def feed(self, data: bytes) -> None:
        if not self._streaming:
            if len(self._buf) + len(data) <= MAX_JSON_BYTES:
                self._buf += data
            return
        if self._buf:
            data = bytes(self._buf) + data
            self._buf.clear()
        lines = data.split(b"\n")
        rest = lines.pop()  # what follows the last newline: part of a line still to come
        for line in lines:
            if line.startswith(b"data:"):
                self.at_boundary = False
                if self._name == b"content_block_delta":
                    self._chars += max(0, len(line.rstrip()) - DELTA_OVERHEAD)
                else:
                    self._data(line)
            elif line.startswith(b"event:"):
                self.at_boundary = False
                self._name = line[6:].strip()
            elif not line.strip():
                self.at_boundary = True
                self._name = b""
        if rest:
            self._buf += rest
            self.at_boundary = False

    def _data(self, line: bytes) -> None:
        if self._name == b"message_stop":
            self.stopped = True
        elif self._name != b"ping":
            self._event(line[5:])

    def _event(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            self._take(event["message"])
        elif event.get("type") == "content_block_start":
            block = event.get("content_block")
            self._tools += isinstance(block, dict) and block.get("type") == "tool_use"
        elif event.get("type") == "content_block_delta" and isinstance(event.get("delta"), dict):
            delta = event["delta"]
            self._chars += sum(len(v) for k in DELTA_FIELDS if isinstance(v := delta.get(k), str))
        elif event.get("type") == "message_delta" and isinstance(event.get("usage"), dict):
            self._seen = self._final = True
            for key, value in event["usage"].items():
                if key in self._counts and isinstance(value, int):
                    self._counts[key] = value  # cumulative in message_delta
        elif event.get("type") == "message_stop":
            self.stopped = True

    def _take(self, message: dict[str, object]) -> None:
        if isinstance(message.get("model"), str):
            self._model = str(message["model"])
            self._price = price(self._model)
        content = message.get("content")
        if isinstance(content, list):
            self._tools += sum(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._seen = True
            for key, value in usage.items():
                if key in self._counts and isinstance(value, int):
                    self._counts[key] = value

    def _output(self) -> int:
        output = self._counts["output_tokens"]
        return output if self._final else max(output, -(-self._chars // CHARS_PER_TOKEN))

    def cost_so_far(self) -> float:
        """The cost in USD of what was fed so far (same figure as ``so_far().cost_usd``)."""
        if not self._seen:
            return 0.0
        c, (inp, out) = self._counts, self._price
        return (c["input_tokens"] * inp + self._output() * out + c["cache_creation_input_tokens"] * inp * 1.25
                + c["cache_read_input_tokens"] * inp * 0.1) / 1e6

    def so_far(self) -> Usage | None:
        """The usage of what was fed so far (output estimated until reported); None before any."""
        if not self._seen:
            return None
        c = self._counts
        return Usage(self._model or "unknown", c["input_tokens"], self._output(),
                     c["cache_creation_input_tokens"], c["cache_read_input_tokens"], self._tools)

    def result(self) -> Usage | None:
        """After the body ended (or was cut): its usage, or None when it reported none."""
        if not self._streaming:
            try:
                doc = json.loads(bytes(self._buf))
            except ValueError:
                return None
            if isinstance(doc, dict):
                self._take(doc)
                self._final = True
        return self.so_far()

"""The meter reads usage as the stream passes: estimates before message_delta, exact after."""

from __future__ import annotations

import json
from typing import Any

from ashd.proxy.meter import Meter


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


START = _event("message_start", {"type": "message_start", "message": {
    "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 1000, "output_tokens": 1}}})
TEXT = "forty characters of text, exactly so...."


def _delta(text: str) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": text}})


def test_output_is_estimated_from_relayed_text_until_reported() -> None:
    meter = Meter(streaming=True)
    meter.feed(START)
    assert meter.so_far() is not None and meter.so_far().output_tokens == 1  # type: ignore[union-attr]
    for _ in range(10):
        meter.feed(_delta(TEXT))
    usage = meter.so_far()
    assert usage is not None and usage.input_tokens == 1000 and usage.output_tokens == 10 * len(TEXT) // 4
    assert meter.cost_so_far() == usage.cost_usd
    meter.feed(_event("message_delta", {"type": "message_delta", "usage": {"output_tokens": 77}}))
    meter.feed(_event("message_stop", {"type": "message_stop"}))
    final = meter.result()
    assert final is not None and final.output_tokens == 77 and meter.stopped


def test_pieces_split_anywhere_give_the_same_usage_and_boundaries() -> None:
    stream = START + _delta(TEXT) * 3
    whole, split = Meter(streaming=True), Meter(streaming=True)
    whole.feed(stream)
    for i in range(0, len(stream), 7):
        split.feed(stream[i:i + 7])
    assert whole.so_far() == split.so_far()
    assert whole.at_boundary and split.at_boundary
    split.feed(b"event: content_block_delta\ndata: {\"ty")
    assert not split.at_boundary

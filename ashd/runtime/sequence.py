"""A session's SSE event ids, allocated in memory (loop thread only).

Read once from the store when the session's :class:`~ashd.runtime.live.LiveSession` is made,
then advanced by its turns: no read-back of the last stored id per message. One turn at a
time per session (the session actor's grant) makes a plain counter safe.
"""

from __future__ import annotations


class EventSequence:
    def __init__(self, last: int) -> None:
        """``last``: the highest id stored so far (0 for none)."""
        self._next = last + 1

    def take(self) -> int:
        """The next id; never given out twice."""
        seq = self._next
        self._next += 1
        return seq

    @property
    def last(self) -> int:
        return self._next - 1

"""Reading a request body without parsing again what the same sandbox sent before (pure).

The CLI sends the whole conversation with every model call: a call's body is the one before
it with a few messages added (and a cache marker moved). Parsed and checked whole, a body costs
time in proportion to the conversation, on the proxy's thread, before anything is forwarded:
1.2 ms at 300 short turns, every call, and more with large tool results.

A :class:`BodyMemo` (one per sandbox, proxy loop thread only) keeps the text of the last body
that passed the check, cut where its top-level values and the elements of its ``messages``
lay. :func:`read` reads the next body with the standard library's own JSON scanner, one value
at a time, and does not parse a value again when its text is the same as last time's at the
same place (the same top-level key; for ``messages``, the same run of elements from the
first), provided that value is an object, an array or a string. Those end where their own text
says (a closing bracket or quote), so the same text at the same place is the same value, and
last time that value passed the same checks. A number or literal (``1`` could go on as
``12``) is always parsed. What comes after a skipped value must still be a separator, as the
scanner would require.

Anything the reader does not expect (a syntax error, a duplicate key, a top level that is not
an object, bytes that are not UTF-8) makes it give up: the caller checks the body whole, which
gives the error a whole check gives. A body longer than :data:`MEMO_MAX_CHARS` is not
remembered (the memo is emptied), so a sandbox holds at most that much text here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MEMO_MAX_CHARS = 4 * 1024 * 1024
WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's, as the json module's own scanner skips it
SELF_DELIMITING = frozenset('{["')
MESSAGES = "messages"


class Unexpected(Exception):
    """The reader gives up; the body is checked whole."""


@dataclass
class BodyMemo:
    """The last body that passed: each top-level value's text by key (self-delimiting values
    only), and the text of ``messages`` from its first element to the end of each element."""

    values: dict[str, str] = field(default_factory=dict)
    messages: str = ""
    message_ends: list[int] = field(default_factory=list)  # in ``messages``; objects only
    skipped: int = 0  # values and messages not parsed again, in all (for tests and benchmarks)

    def forget(self) -> None:
        self.values, self.messages, self.message_ends = {}, "", []


@dataclass
class Reading:
    """A body read against a memo: ``doc`` holds the values that were parsed (a skipped
    top-level value is absent; a skipped message is None), ``remember()`` makes this body the
    memo's, once it passed."""

    doc: dict[str, Any]
    remember: Callable[[], None]


def read(text: str, memo: BodyMemo, scan: Callable[[str, int], tuple[Any, int]]) -> Reading:
    """Read ``text`` (a decoded body) as a JSON object; ``scan(text, i)`` parses one value at
    ``i`` (the checker's decoder, which refuses duplicate keys). Raises Unexpected."""
    try:
        return _Reader(text, memo, scan).read()
    except (ValueError, IndexError, RecursionError) as exc:
        raise Unexpected from exc


class _Reader:
    def __init__(self, text: str, memo: BodyMemo, scan: Callable[[str, int], tuple[Any, int]]) -> None:
        self.s, self.memo, self.scan = text, memo, scan
        self.skipped = 0
        self.values: dict[str, str] = {}
        self.messages = ""
        self.ends: list[int] = []

    def read(self) -> Reading:
        s = self.s
        i = self._ws(self._expect(0, "{"))
        doc: dict[str, Any] = {}
        keys: set[str] = set()
        if s[i] == "}":
            i += 1
        else:
            while True:
                if s[i] != '"':
                    raise Unexpected
                key, i = self.scan(s, i)
                if key in keys:
                    raise Unexpected  # a duplicate key: the whole check refuses it
                keys.add(key)
                i = self._expect(i, ":")
                i = self._ws(i)
                i = self._messages(i, doc) if key == MESSAGES and s[i] == "[" else self._value(key, i, doc)
                i = self._ws(i)
                if s[i] == "}":
                    i += 1
                    break
                i = self._ws(self._expect(i, ",", skip_ws=False))
        if self._ws(i) != len(s):
            raise Unexpected
        return Reading(doc, self._remember)

    def _value(self, key: str, i: int, doc: dict[str, Any]) -> int:
        before = self.memo.values.get(key)
        if before is not None and self.s.startswith(before, i):  # it begins with {, [ or "
            self.skipped += 1
            self.values[key] = before
            return i + len(before)
        doc[key], end = self.scan(self.s, i)
        if self.s[i] in SELF_DELIMITING:
            self.values[key] = self.s[i:end]
        return end

    def _messages(self, i: int, doc: dict[str, Any]) -> int:
        """``messages`` (an array): the longest run of last time's elements skipped at once,
        then every other element parsed. Remembers where the leading objects end."""
        s = self.s
        first = self._ws(i + 1)
        same = self._same_run(first)
        out: list[Any] = [None] * same
        self.skipped += same
        self.ends = self.memo.message_ends[:same]
        j = first + self.ends[-1] if same else first
        objects = True  # every element so far is an object: their ends are remembered
        if same or s[j] != "]":
            while True:
                if out:
                    j = self._ws(j)
                    if s[j] == "]":
                        break
                    j = self._ws(self._expect(j, ",", skip_ws=False))
                start = j
                value, j = self.scan(s, j)
                out.append(value)
                objects = objects and s[start] == "{"
                if objects:
                    self.ends.append(j - first)
        doc[MESSAGES] = out
        self.messages = s[first:first + self.ends[-1]] if self.ends else ""
        return j + 1

    def _same_run(self, first: int) -> int:
        """How many of last time's messages begin this array, the same text. The CLI's next
        call repeats all of them but the last one or two (their cache markers move), so those
        runs are tried first; then a binary search (if a run matches, so does every shorter one)."""
        ends, before = self.memo.message_ends, self.memo.messages
        for run in range(len(ends), max(0, len(ends) - 3), -1):  # the whole text is not copied
            if self.s.startswith(before[:ends[run - 1]], first):
                return run
        low, high = 1, len(ends) - 3  # high may match, low must; find the largest that does
        if high < low or not self.s.startswith(before[:ends[0]], first):
            return 0
        while low < high:
            mid = (low + high + 1) // 2
            if self.s.startswith(before[:ends[mid - 1]], first):
                low = mid
            else:
                high = mid - 1
        return low

    def _remember(self) -> None:
        memo = self.memo
        memo.skipped += self.skipped
        if len(self.s) > MEMO_MAX_CHARS:
            memo.forget()
            return
        memo.values, memo.messages, memo.message_ends = self.values, self.messages, self.ends

    def _ws(self, i: int) -> int:
        return WHITESPACE.match(self.s, i).end()  # type: ignore[union-attr]  # it matches the empty string

    def _expect(self, i: int, char: str, skip_ws: bool = True) -> int:
        if skip_ws:
            i = self._ws(i)
        if self.s[i] != char:
            raise Unexpected
        return i + 1

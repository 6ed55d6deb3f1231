"""Recent output of each session's agent process, in memory (``GET /api/sessions/:id/logs``).

A :class:`LogRing` keeps the last ``capacity`` lines of one session: the bridge's (and the
CLI's) stderr and ``system`` lines ashd writes about the process (started, restarted,
exited, out of memory). Indexes grow from 0 and are never reused, so ``?after=<index>``
pages forward even after old lines fell out. Every line is redacted before it is stored.

A :class:`LogBook` holds the rings by session id and forgets the least recently written
ones beyond ``keep``. Thread-safe: writers are the sandbox pump threads and actors, readers
the HTTP layer's read pool; no call blocks beyond a short lock.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

from ashd.store.timestamps import utc_now

LEVELS = ("stdout", "stderr", "system")
MAX_LINE_CHARS = 4000
_SECRETS = re.compile(r"(ash_|sk-ant-)[A-Za-z0-9_\-]{4,}")


def redact(text: str) -> str:
    """Pure: mask anything that looks like an ashd API key or an Anthropic key."""
    return _SECRETS.sub(lambda m: m.group(1) + "***", text)


@dataclass(frozen=True)
class LogLine:
    index: int
    level: str
    text: str
    ts: str

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "level": self.level, "text": self.text, "ts": self.ts}


class LogRing:
    def __init__(self, capacity: int = 1000) -> None:
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._next = 0
        self._lock = threading.Lock()
        self.starts = 0  # agent process starts seen (a later start is a restart)

    def add(self, level: str, text: str) -> LogLine:
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
        text = redact(text.rstrip("\n"))
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " [line truncated]"
        with self._lock:
            line = LogLine(self._next, level, text, utc_now())
            self._next += 1
            self._lines.append(line)
        return line

    def after(self, index: int) -> list[LogLine]:
        """Lines with an index above ``index`` (all for -1), oldest first."""
        with self._lock:
            return [line for line in self._lines if line.index > index]


class LogBook:
    def __init__(self, capacity: int = 1000, keep: int = 256) -> None:
        self._capacity = capacity
        self._keep = keep
        self._rings: OrderedDict[str, LogRing] = OrderedDict()
        self._lock = threading.Lock()

    def ring(self, session_id: str) -> LogRing:
        """The session's ring, created if new (and marked most recently used)."""
        with self._lock:
            ring = self._rings.get(session_id)
            if ring is None:
                ring = self._rings[session_id] = LogRing(self._capacity)
                while len(self._rings) > self._keep:
                    self._rings.popitem(last=False)
            else:
                self._rings.move_to_end(session_id)
            return ring

    def find(self, session_id: str) -> LogRing | None:
        with self._lock:
            return self._rings.get(session_id)

    def lines(self, session_id: str, after: int = -1) -> list[LogLine]:
        ring = self.find(session_id)
        return ring.after(after) if ring is not None else []

    def system(self, session_id: str, text: str) -> None:
        self.ring(session_id).add("system", text)

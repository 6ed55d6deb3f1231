"""A message streamed on its own thread, for tests that act while a turn runs (kill a
runner, cut a link, send through another coordinator)."""

from __future__ import annotations

import threading

import httpx


class StreamedTurn:
    """``POST /api/sessions/:id/messages`` with partial messages, read on a thread of its own.
    ``started`` is set once ``marker`` has arrived (the first text delta by default);
    :meth:`join` waits for the stream's end and answers its whole SSE text."""

    def __init__(self, client: httpx.Client, session_id: str, content: str, *, marker: str = "text_delta",
                 timeout_s: float = 300) -> None:
        self.started = threading.Event()
        self._body = ""
        self._thread = threading.Thread(target=self._run, args=(client, session_id, content, marker, timeout_s),
                                        name="streamed-turn", daemon=True)
        self._thread.start()

    def _run(self, client: httpx.Client, session_id: str, content: str, marker: str, timeout_s: float) -> None:
        with client.stream("POST", f"/api/sessions/{session_id}/messages", timeout=timeout_s,
                           json={"content": content, "includePartialMessages": True}) as resp:
            for chunk in resp.iter_text():
                self._body += chunk
                if marker in self._body[-(len(chunk) + len(marker)):]:
                    self.started.set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float = 120) -> str:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the turn's stream never ended"
        return self._body

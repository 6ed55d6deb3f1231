"""POST /api/sessions/:id/exec and GET /api/sessions/:id/logs.

Exec runs a shell command inside the session's sandbox, through the session's bridge link
(beside a running turn, if any; results route by request id). Logs read the in-memory ring
of the session's agent process output (``ashd/sandbox/logring.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ashd.errors import BadRequest, Conflict
from ashd.http.sessions import MAX_SEQ, SessionBase
from ashd.wire.link import BridgeGone

MAX_COMMAND_CHARS = 100_000
MAX_TIMEOUT_MS = 300_000
DEFAULT_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class ExecRequest:
    command: str
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> ExecRequest:
        """Pure validation. Raises BadRequest naming what to fix."""
        unknown = sorted(set(body) - {"command", "timeout"})
        if unknown:
            raise BadRequest(f"unknown exec field(s): {', '.join(unknown)}; expected command and timeout")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise BadRequest("command must be a non-empty string (run with /bin/sh -c)")
        if len(command) > MAX_COMMAND_CHARS:
            raise BadRequest(f"command is longer than {MAX_COMMAND_CHARS} characters")
        if "\0" in command:
            raise BadRequest("command must not contain NUL characters")
        timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise BadRequest("timeout must be an integer number of milliseconds")
        if not 1 <= timeout <= MAX_TIMEOUT_MS:
            raise BadRequest(f"timeout must be between 1 and {MAX_TIMEOUT_MS} milliseconds")
        return cls(command, timeout)


class ExecHandler(SessionBase):
    async def post(self, session_id: str) -> None:
        request = ExecRequest.from_request(self.json_body())
        row = await self.session_row(session_id)
        grant = await self.ctx.offload.ask((await self.actor(row)).exec_target())
        try:
            link = await self.ctx.links.get(grant)
            result = await link.exec(request.command, request.timeout_ms)
        except BridgeGone as exc:
            raise Conflict(f"The session's sandbox is not reachable: {exc}") from None
        self.send_json({"exitCode": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
                        "truncated": result.truncated, "timedOut": result.timed_out})


class LogsHandler(SessionBase):
    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        after = self.int_arg("after", -1, -1, MAX_SEQ)
        lines = self.ctx.tree.logs.lines(row.id, after)
        self.send_json({"logs": [line.to_json() for line in lines], "source": "sandbox"})

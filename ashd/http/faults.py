"""POST /api/internal/faults: TEST ONLY. Crash an actor of this daemon on request.

The route exists only when ``debug.fault_injection`` (``ASH_FAULT_INJECTION``) is on, which
is off by default and logged loudly at start; it is guarded like every internal route
(``Authorization: Bearer <ASH_INTERNAL_SECRET>``). Body: ``{"target": "pool" | "sessions" |
"session" | "sandbox", "sessionId": ..., "tenantId": ...}``; 202 once the fault is sent.
See docs/operations.md ("Fault injection").
"""

from __future__ import annotations

from ashd.errors import BadRequest
from ashd.http.internal import InternalHandler
from ashd.http.keys import check_fields


class FaultsHandler(InternalHandler):
    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"target", "sessionId", "tenantId"})
        target, session_id, tenant_id = body.get("target"), body.get("sessionId"), body.get("tenantId", "default")
        if not isinstance(target, str) or not isinstance(tenant_id, str) or not isinstance(session_id, str | None):
            raise BadRequest("target and tenantId must be strings, sessionId a string or absent")
        await self.ctx.runtime.inject_fault(target, session_id, tenant_id)
        self.send_json({"injected": target, "sessionId": session_id}, status=202)

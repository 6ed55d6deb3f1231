"""Routes for the operator's tools, not for tenants: authenticated by the internal secret.

``Authorization: Bearer <ASH_INTERNAL_SECRET>`` (compared in constant time; fail closed when
no secret is configured). A wrong secret counts against the caller's address like a wrong key.
"""

from __future__ import annotations

from ashd.errors import AshError
from ashd.http import scopes
from ashd.http.auth import Principal, check_internal_secret
from ashd.http.base import ApiHandler


class InternalHandler(ApiHandler):
    required_scope = scopes.ADMIN

    async def authenticate(self) -> None:
        try:
            check_internal_secret(self.request.headers.get("Authorization"),
                                  self.ctx.config.auth.internal_secret.reveal())
        except AshError:
            self.throttle_address()
            raise
        self.principal = Principal("", "internal", frozenset({scopes.ADMIN}))

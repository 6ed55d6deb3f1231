"""CORS: off unless ``ASH_ALLOWED_ORIGINS`` lists origins; then only those are reflected.

Unlike Ash (which reflects any origin with credentials when the list is unset), ashd sends
no ``Access-Control-*`` header at all by default: browsers then refuse cross-origin reads,
which is the safe default for an API holding bearer keys. The headers are set on every
response of a listed origin, errors and SSE streams included. Pure, any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Accept"
EXPOSE_HEADERS = "Retry-After, Content-Disposition, X-Ash-Source"
PREFLIGHT_MAX_AGE_S = 600


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str] = frozenset()

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin.rstrip("/") in self.origins

    def headers(self, origin: str | None) -> dict[str, str]:
        """Headers for any response to a request from ``origin`` (none when CORS is off)."""
        if not self.origins:
            return {}
        if not self.allows(origin):
            return {"Vary": "Origin"}  # caches must not reuse this answer for a listed origin
        return {
            "Access-Control-Allow-Origin": str(origin),
            "Access-Control-Expose-Headers": EXPOSE_HEADERS,
            "Vary": "Origin",
        }

    def preflight(self, origin: str | None) -> dict[str, str]:
        """Headers for an ``OPTIONS`` preflight from ``origin`` (empty: refuse it)."""
        if not self.allows(origin):
            return {}
        return {**self.headers(origin),
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)}

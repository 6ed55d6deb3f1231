"""GET /metrics: Prometheus text 0.0.4 (auth required, like Ash; see docs/operations.md).

The figures are process-wide (every tenant's sessions and requests), so only an ``admin``
key of the operator's ``default`` tenant (or ASH_API_KEY) may read them.
"""

from __future__ import annotations

import re

import tornado.web

from ashd.errors import Forbidden
from ashd.http import scopes
from ashd.http.auth import DEFAULT_TENANT
from ashd.http.base import ApiHandler
from ashd.metrics import CONTENT_TYPE


class MetricsHandler(ApiHandler):
    required_scope = scopes.ADMIN

    async def get(self) -> None:
        if self.tenant != DEFAULT_TENANT:
            raise Forbidden("/metrics covers every tenant: only keys of the operator's 'default' tenant may read it")
        # Rendering asks the pool for its figures (blocking, with a timeout): off the loop.
        body = await self.ctx.offload.read(self.ctx.metrics.render)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)


def route_labels(app: tornado.web.Application) -> dict[type, str]:
    """Handler class -> its route pattern in Ash's form (``/api/sessions/:id``), read by
    ``ApiHandler.on_finish``. Each handler class serves one pattern."""
    labels: dict[type, str] = {}
    for rule in app.wildcard_router.rules:
        regex = getattr(rule.matcher, "regex", None)
        if isinstance(rule.target, type) and regex is not None:
            labels[rule.target] = route_label(regex.pattern)
    return labels


def route_label(pattern: str) -> str:
    """``/api/agents/([^/]+)/config$`` -> ``/api/agents/:name/config``; other captures are ``:id``."""
    path = pattern.removesuffix("$")
    path = re.sub(r"(?<=/api/agents/)\([^)]*\)", ":name", path)
    return re.sub(r"\([^)]*\)", ":id", path)

"""The runner's HTTP calls to the coordinators: JSON POSTs with the internal secret (tornado's client)."""

from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ashd.runner.membership import Answer, Post

REQUEST_TIMEOUT_S = 5.0


def coordinator_post(secret: str, timeout_s: float = REQUEST_TIMEOUT_S) -> Post:
    """A :data:`~ashd.runner.membership.Post` over tornado's client. Loop thread only."""

    async def post(url: str, body: dict[str, Any]) -> Answer:
        request = HTTPRequest(url, method="POST", body=json.dumps(body), request_timeout=timeout_s,
                              connect_timeout=timeout_s, follow_redirects=False,
                              headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as exc:  # boundary: refused, reset, timed out, bad name: "not reached"
            return Answer(0, error=str(exc) or type(exc).__name__)
        try:
            decoded = json.loads(response.body or b"null")
        except ValueError:
            decoded = None
        return Answer(response.code, decoded if isinstance(decoded, dict) else None)

    return post

"""Which requests the model proxy forwards: exactly the Messages API (pure).

The upstream is reached with the operator's key, so the request line is checked before
anything else, strictly and without decoding: a path is forwarded only when it *is*
``/v1/messages`` or ``/v1/messages/count_tokens`` character for character. Dot segments,
empty segments, backslashes and any percent-encoding in the path are refused outright
(``/v1/messages/../../v1/files``, ``/v1/messages/%2e%2e/v1/files``, ``//v1/messages``): an
upstream or a load balancer in front of it might decode or collapse them into another
route. A query string is passed through (the CLI sends ``?beta=true``); it cannot change
the route. ``HEAD``/``GET /api/hello`` (the CLI's connectivity probe, sent only when
nonessential traffic is on) is answered by the proxy itself and never forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
HELLO = "/api/hello"
FORWARDED = {MESSAGES: "POST", COUNT_TOKENS: "POST"}
LOCAL = {HELLO: ("HEAD", "GET")}
VERSIONS = ("HTTP/1.1", "HTTP/1.0")
SERVED = "the ashd model proxy serves only POST /v1/messages and POST /v1/messages/count_tokens"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # one of FORWARDED or LOCAL, exactly
    target: str  # path and query, as sent upstream (after the upstream's own prefix)

    @property
    def local(self) -> bool:
        return self.path in LOCAL


class RouteRefused(Exception):
    """The request line names nothing the proxy forwards; ``status`` is the 4xx to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def route(start_line: str) -> Route:
    """Check a request line (``POST /v1/messages?beta=true HTTP/1.1``). Raises RouteRefused."""
    parts = start_line.split(" ")
    if len(parts) != 3 or parts[2] not in VERSIONS:
        raise RouteRefused(400, "malformed request line")
    method, target, _ = parts
    if not target or not all("!" <= ch <= "~" for ch in target):
        raise RouteRefused(400, "the request target must be printable ASCII without spaces")
    if not target.startswith("/") or "#" in target:
        raise RouteRefused(400, "the request target must be a path (origin form), without a fragment")
    path = target.split("?", 1)[0]
    _check_path(path)
    if path in LOCAL:
        if method not in LOCAL[path]:
            raise RouteRefused(405, f"{method} {path} is not allowed; {SERVED}")
        return Route(method, path, target)
    if path not in FORWARDED:
        raise RouteRefused(404, f"{path} is not forwarded: {SERVED}")
    if method != FORWARDED[path]:
        raise RouteRefused(405, f"{method} {path} is not allowed; {SERVED}")
    return Route(method, path, target)


def _check_path(path: str) -> None:
    if "%" in path:
        raise RouteRefused(400, f"the path {path[:100]!r} contains percent-encoding (e.g. %2e, %2f, %5c), "
                                "which the model proxy never forwards")
    if "\\" in path:
        raise RouteRefused(400, f"the path {path[:100]!r} contains a backslash")
    segments = path.split("/")[1:]
    if any(seg in (".", "..") for seg in segments):
        raise RouteRefused(400, f"the path {path[:100]!r} contains a dot segment ('.' or '..')")
    if any(not seg for seg in segments):
        raise RouteRefused(400, f"the path {path[:100]!r} contains an empty segment ('//' or a trailing '/')")

"""What a coordinator reads off a runner's reports about a sandbox it hosts: metered usage
(:func:`usage_of`: checked, priced here, never taken as given), the notice types the sandbox
services send (:data:`NOTICE_TYPES`) and an admission refusal (:func:`refusal_of`)."""

from __future__ import annotations

from ashd.errors import InsufficientStorage, Unavailable
from ashd.proxy.meter import Usage

NOTICE_TYPES = ("sandbox_oom", "egress")  # what the sandbox services notice (isolating_launcher.py)
_USAGE_COUNTS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "tool_calls")


def usage_of(raw: object) -> Usage | None:
    """A runner's usage record (``Usage`` as a dict), checked: a model name and counts that are
    non-negative integers; None if malformed. The cost is priced here, never taken."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
        return None
    counts = {k: raw.get(k, 0) for k in _USAGE_COUNTS}
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**40 for v in counts.values()):
        return None
    return Usage(str(raw["model"])[:200], **counts)


def refusal_of(runner: str, raw: object) -> Unavailable:
    """A runner's admission refusal (full: 503; no disk for the workspace image: 507) as the
    error the session's client gets."""
    body = raw if isinstance(raw, dict) else {}
    message = str(body.get("message") or "the runner refused the sandbox")[:1000]
    retry = body.get("retry_after_s")
    retry_s = retry if isinstance(retry, int) and not isinstance(retry, bool) and 0 < retry <= 3600 else 5
    if body.get("status") == InsufficientStorage.status:
        return InsufficientStorage(f"runner {runner}: {message}", retry_s)
    return Unavailable(f"runner {runner}: {message}", retry_after_s=retry_s)

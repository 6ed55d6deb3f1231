"""Request rate limits: in-memory token buckets per API key (or client address).

A bucket holds up to ``limit`` tokens and refills continuously at ``limit / window``
tokens per second, so a client may burst ``limit`` requests and then gets one more every
``window / limit`` seconds. Rules: ``global`` (every request) plus one per expensive
route (``POST /api/sessions``, ``POST /api/agents``); a request must find a token in
every bucket that applies, and takes from all of them only when it does. Limits are
per daemon process (not shared between coordinators) and reset on restart.

Loop thread only (no locks); the clock is injected so tests need no sleeps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ashd.config import RateLimitConfig
from ashd.errors import RateLimited

Clock = Callable[[], float]
MAX_BUCKETS = 50_000  # full (idle) buckets are dropped beyond this many


class TokenBucket:
    """``limit`` tokens refilling over ``window_s``. Pure: every call is given the time."""

    __slots__ = ("_at", "_tokens", "limit", "window_s")

    def __init__(self, limit: int, window_s: float, now: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._tokens = float(limit)
        self._at = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._tokens = min(float(self.limit), self._tokens + elapsed * self.limit / self.window_s)
        self._at = max(self._at, now)

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0 if one is there now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 1e-9 else missing * self.window_s / self.limit

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.limit


@dataclass(frozen=True)
class Rule:
    name: str
    limit: int
    what: str  # "requests", "session creations": for the 429 message


def rules_for(config: RateLimitConfig) -> dict[str, Rule]:
    """The enabled rules by name (a limit of 0 disables its rule)."""
    every = (Rule("global", config.global_max, "requests"),
             Rule("sessions", config.sessions_max, "session creations"),
             Rule("agents", config.agents_max, "agent deploys"))
    return {r.name: r for r in every if r.limit > 0}


# (method, path) -> the route rule on top of "global".
ROUTE_RULES = {("POST", "/api/sessions"): "sessions", ("POST", "/api/agents"): "agents"}


def describe_window(window_s: float) -> str:
    """900 -> "15 min", 3600 -> "1 h", 2 -> "2 s"."""
    if window_s >= 3600 and window_s % 3600 == 0:
        return f"{int(window_s // 3600)} h"
    if window_s >= 60 and window_s % 60 == 0:
        return f"{int(window_s // 60)} min"
    return f"{window_s:g} s"


class RateLimiter:
    """The buckets of every client. ``check`` raises RateLimited (429) or takes a token."""

    def __init__(self, config: RateLimitConfig, clock: Clock = time.monotonic) -> None:
        self._rules = rules_for(config)
        self._window_s = config.window_s
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def check(self, client: str, method: str, path: str) -> None:
        """Count one request of ``client`` (``key:<id>`` or ``ip:<address>``).

        Raises RateLimited with the whole seconds to wait when any applicable bucket is empty;
        nothing is taken from any bucket then.
        """
        names = ["global"]
        route_rule = ROUTE_RULES.get((method, path.rstrip("/") or "/"))
        if route_rule:
            names.insert(0, route_rule)
        now = self._clock()
        rules = [self._rules[n] for n in names if n in self._rules]
        buckets = [self._bucket(client, rule, now) for rule in rules]
        for rule, bucket in zip(rules, buckets, strict=True):
            wait = bucket.wait_s(now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise RateLimited(
                    f"Rate limit exceeded: {rule.limit} {rule.what} per {describe_window(self._window_s)}; "
                    f"retry in {retry} s", retry)
        for bucket in buckets:
            bucket.take(now)

    def _bucket(self, client: str, rule: Rule, now: float) -> TokenBucket:
        key = (rule.name, client)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(rule.limit, self._window_s, now)
        return bucket

    def _prune(self, now: float) -> None:
        # A full bucket is indistinguishable from a new one: dropping it forgets nothing.
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        # Still too many (a flood of distinct clients): forget the oldest, bounding memory.
        for key in list(self._buckets)[: max(0, len(self._buckets) - MAX_BUCKETS // 2)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)

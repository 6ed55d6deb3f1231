"""Token buckets and the limiter, with an injected clock (no sleeps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashd import config
from ashd.config import RateLimitConfig
from ashd.errors import ConfigError, RateLimited
from ashd.http.ratelimit import RateLimiter, TokenBucket, describe_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_one_token_per_window_over_limit() -> None:
    bucket = TokenBucket(3, 30.0, now=0.0)
    for _ in range(3):
        assert bucket.wait_s(0.0) == 0
        bucket.take(0.0)
    assert bucket.wait_s(0.0) == pytest.approx(10.0)  # 30 s / 3 tokens
    assert bucket.wait_s(4.0) == pytest.approx(6.0)
    assert bucket.wait_s(10.0) == 0
    bucket.take(10.0)
    assert bucket.wait_s(10.0) == pytest.approx(10.0)
    assert bucket.full(100.0) and bucket.wait_s(100.0) == 0


def test_bucket_never_holds_more_than_its_limit_and_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(2, 10.0, now=0.0)
    assert bucket.full(1e6)
    bucket.take(1e6)
    bucket.take(1e6)
    assert bucket.wait_s(1e6 - 100) == pytest.approx(5.0)  # earlier time: no refill, no crash


def test_session_limit_gives_429_with_message_and_retry_then_succeeds_after_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(window_s=900, global_max=1500, sessions_max=20), clock)
    for _ in range(20):
        limiter.check("key:a", "POST", "/api/sessions")
    with pytest.raises(RateLimited) as info:
        limiter.check("key:a", "POST", "/api/sessions")
    assert info.value.status == 429 and info.value.retry_after_s == 45
    assert info.value.message == "Rate limit exceeded: 20 session creations per 15 min; retry in 45 s"
    limiter.check("key:a", "GET", "/api/sessions")  # other routes only see the global bucket
    limiter.check("key:b", "POST", "/api/sessions")  # another key has its own buckets
    clock.now += 3
    with pytest.raises(RateLimited) as info:
        limiter.check("key:a", "POST", "/api/sessions")
    assert info.value.retry_after_s == 42
    clock.now += 42
    limiter.check("key:a", "POST", "/api/sessions")


def test_a_refused_request_takes_no_token_from_any_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(window_s=60, global_max=3, sessions_max=1), clock)
    limiter.check("k", "POST", "/api/sessions")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.check("k", "POST", "/api/sessions")
    limiter.check("k", "GET", "/x")
    limiter.check("k", "GET", "/x")  # global had 3: one session + these two
    with pytest.raises(RateLimited, match="3 requests per 1 min"):
        limiter.check("k", "GET", "/x")


def test_agents_limit_and_zero_disables_a_rule() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(global_max=0, sessions_max=0, agents_max=1), clock)
    for _ in range(100):
        limiter.check("k", "POST", "/api/sessions")
        limiter.check("k", "GET", "/api/agents")
    limiter.check("k", "POST", "/api/agents")
    with pytest.raises(RateLimited, match="1 agent deploys per 15 min"):
        limiter.check("k", "POST", "/api/agents/")


def test_memory_is_bounded_under_a_flood_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ashd.http.ratelimit.MAX_BUCKETS", 100)
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(global_max=5), clock)
    for i in range(1000):
        limiter.check(f"ip:{i}", "GET", "/")
    assert len(limiter) <= 100


def test_window_wording() -> None:
    assert (describe_window(900), describe_window(3600), describe_window(2), describe_window(90)) == (
        "15 min", "1 h", "2 s", "90 s")


def test_config_section_and_env_names() -> None:
    loaded = config.load(env={"ASH_RATE_LIMIT_WINDOW_S": "60", "ASH_RATE_LIMIT_GLOBAL": "0",
                              "ASH_RATE_LIMIT_SESSIONS": "5", "ASH_RATE_LIMIT_AGENTS": "7"})
    assert loaded.rate_limit == RateLimitConfig(window_s=60, global_max=0, sessions_max=5, agents_max=7)
    assert config.load(env={}).rate_limit == RateLimitConfig(900, 1500, 20, 20)
    with pytest.raises(ConfigError, match="ASH_RATE_LIMIT_SESSIONS"):
        config.load(env={"ASH_RATE_LIMIT_SESSIONS": "-1"})
    with pytest.raises(ConfigError, match="ASH_RATE_LIMIT_WINDOW_S"):
        config.load(env={"ASH_RATE_LIMIT_WINDOW_S": "0"})


def test_config_file_section(tmp_path: Path) -> None:
    path = tmp_path / "ashd.toml"
    path.write_text("[rate_limit]\nsessions_max = 3\n[server]\nallowed_origins = 'https://a.example/, https://b'\n")
    loaded = config.load(path, env={})
    assert loaded.rate_limit.sessions_max == 3
    assert config.allowed_origins(loaded.server) == {"https://a.example", "https://b"}

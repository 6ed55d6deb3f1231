"""The short-lived key cache: fresh hits, expiry, and revocation that takes effect at once."""

from __future__ import annotations

from ashd.http.auth import Principal
from ashd.http.keycache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ALICE = Principal("acme", "key-1", frozenset({"admin"}))
BOB = Principal("acme", "key-2", frozenset({"read"}))


def test_a_key_is_remembered_until_its_ttl_then_looked_up_again() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=5.0, clock=clock)
    assert cache.get("Bearer a") is None
    cache.put("Bearer a", ALICE, cache.generation)
    assert cache.get("Bearer a") == ALICE
    assert cache.get("Bearer b") is None
    clock.now += 5.0
    assert cache.get("Bearer a") is None


def test_forgetting_a_key_refuses_every_cached_use_of_it_at_once() -> None:
    cache = KeyCache(clock=Clock())
    cache.put("Bearer a", ALICE, cache.generation)
    cache.put("Bearer  a", ALICE, cache.generation)  # another header spelling of the same key
    cache.put("Bearer b", BOB, cache.generation)
    cache.forget_key("key-1")
    assert cache.get("Bearer a") is None and cache.get("Bearer  a") is None
    assert cache.get("Bearer b") == BOB


def test_a_lookup_that_began_before_a_revocation_is_not_cached() -> None:
    cache = KeyCache(clock=Clock())
    began = cache.generation  # the store read of key-1 starts
    cache.forget_key("key-1")  # meanwhile key-1 is deleted
    cache.put("Bearer a", ALICE, began)  # the read returns the row it saw before the delete
    assert cache.get("Bearer a") is None


def test_the_table_stays_bounded() -> None:
    cache = KeyCache(clock=Clock(), max_entries=3)
    for i in range(10):
        cache.put(f"Bearer {i}", ALICE, cache.generation)
    assert cache.get("Bearer 9") == ALICE
    assert sum(cache.get(f"Bearer {i}") is not None for i in range(10)) <= 3

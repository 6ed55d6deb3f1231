"""A runner's agent cache is bounded: the least recently used versions go, never one a launch
or a hosted sandbox holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ashd.sandbox import agent_cache
from ashd.sandbox.agent_cache import AgentCache, pack


def _archive(tmp_path: Path, name: str, size: int) -> bytes:
    folder = tmp_path / "src" / name
    folder.mkdir(parents=True)
    (folder / "CLAUDE.md").write_bytes(os.urandom(size))  # incompressible: the folder holds `size`
    return pack(folder)


def _put(cache: AgentCache, tmp_path: Path, key: str, at: float) -> None:
    cache.put(key, _archive(tmp_path, key, 1500))
    os.utime(cache.root / key, (at, at))  # its last use, for a deterministic order


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentCache:
    monkeypatch.setattr(agent_cache, "MAX_CACHE_BYTES", 3200)  # two versions of 1500 bytes fit, three do not
    return AgentCache(tmp_path / "agent-cache")


def test_the_least_recently_used_version_goes_when_the_cache_is_over(cache: AgentCache, tmp_path: Path) -> None:
    _put(cache, tmp_path, "a.1", 1000)
    _put(cache, tmp_path, "a.2", 2000)
    assert cache.hold("a.1") is not None  # a launch uses a.1 now: a.2 is the least recently used
    cache.release("a.1")
    cache.put("a.3", _archive(tmp_path, "a.3", 1500))
    assert cache.path("a.2") is None and cache.path("a.1") is not None and cache.path("a.3") is not None
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # nothing half-removed is left


def test_a_held_version_is_never_evicted(cache: AgentCache, tmp_path: Path) -> None:
    _put(cache, tmp_path, "a.1", 1000)
    _put(cache, tmp_path, "a.2", 2000)
    held = [cache.hold("a.1"), cache.hold("a.2")]  # two hosted sandboxes
    os.utime(cache.root / "a.1", (1000, 1000))
    os.utime(cache.root / "a.2", (2000, 2000))
    cache.put("a.3", _archive(tmp_path, "a.3", 1500))
    assert all(cache.path(k) is not None for k in ("a.1", "a.2", "a.3"))  # over the bound, none evictable
    assert held[0] is not None
    cache.release("a.1")
    assert cache.evict() == ["a.1"]  # released: the oldest goes now
    assert cache.path("a.1") is None and cache.path("a.2") is not None

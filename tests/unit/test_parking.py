"""The park decision and the warm cap: pure, a fake clock (ashd/actors/parking.py)."""

from __future__ import annotations

from pathlib import Path

from ashd.actors import parking
from ashd.actors.parking import Warm
from ashd.states import SandboxState

W, R, S, G = SandboxState.WAITING, SandboxState.RUNNING, SandboxState.WARM, SandboxState.WARMING


def test_due_parks_only_idle_ones_past_the_limit_oldest_first() -> None:
    live = [Warm("young", W, 95.0), Warm("old", W, 10.0), Warm("older", S, 5.0),
            Warm("busy", R, 0.0), Warm("starting", G, 0.0), Warm("leaving", W, 0.0, leaving=True)]
    assert parking.due(live, now=100.0, after_s=30.0, keep=lambda _: False) == ["older", "old"]


def test_due_is_inclusive_at_the_limit_and_not_before() -> None:
    live = [Warm("a", W, 70.0)]
    assert parking.due(live, now=99.9, after_s=30.0, keep=lambda _: False) == []
    assert parking.due(live, now=100.0, after_s=30.0, keep=lambda _: False) == ["a"]


def test_due_spares_what_keep_says_stays() -> None:
    live = [Warm("queued", W, 0.0), Warm("plain", W, 0.0)]
    assert parking.due(live, now=100.0, after_s=1.0, keep=lambda sid: sid == "queued") == ["plain"]


def test_least_recent_skips_running_starting_and_leaving() -> None:
    live = [Warm("busy", R, 0.0), Warm("leaving", W, 1.0, leaving=True), Warm("b", W, 3.0), Warm("a", S, 2.0)]
    assert parking.least_recent(live) == "a"
    assert parking.least_recent([Warm("busy", R, 0.0), Warm("starting", G, 0.0)]) is None


def test_warm_cap_configured_or_from_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8000000 kB\nMemAvailable:   3145728 kB\n")  # 3 GiB
    assert parking.warm_cap(7, meminfo) == 7
    assert parking.warm_cap(-1, meminfo) == (3 * 1024 - 1024) // 250  # (3 GiB - 1 GiB reserve) / 250 MiB
    meminfo.write_text("MemAvailable:   102400 kB\n")  # 100 MiB: less than the reserve
    assert parking.warm_cap(-1, meminfo) == 1
    assert parking.warm_cap(-1, tmp_path / "missing") == 1


def test_relieve_parks_enough_idle_ones_least_recent_first_under_pressure() -> None:
    mib = parking.MIB
    live = [Warm("new", W, 50.0), Warm("old", W, 1.0), Warm("mid", S, 20.0), Warm("busy", R, 0.0)]
    floor = 512 * mib
    assert parking.relieve(live, 600 * mib, floor, lambda _: False) == []  # not short
    assert parking.relieve(live, 0, floor, lambda _: False) == []  # MemAvailable unknown: nothing
    assert parking.relieve(live, 400 * mib, floor, lambda _: False) == ["old"]  # 112 MiB short: one
    assert parking.relieve(live, 100 * mib, floor, lambda _: False) == ["old", "mid"]  # 412 MiB: two
    assert parking.relieve(live, 1 * mib, floor, lambda sid: sid == "old") == ["mid", "new"]  # spared
    leaving = [*live, Warm("going", W, 0.0, leaving=True)]
    assert parking.relieve(leaving, 100 * mib, floor, lambda _: False) == ["old"]  # one is on its way


def test_least_recent_parks_an_unclaimed_prewarm_before_any_session() -> None:
    live = [Warm("session", W, 1.0), Warm("prewarm", W, 50.0, prewarm=True), Warm("busy-prewarm", R, 0.0, prewarm=True)]
    assert parking.least_recent(live) == "prewarm"

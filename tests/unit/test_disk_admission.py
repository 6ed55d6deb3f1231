"""Disk admission arithmetic (ashd/sandbox/admission.py) and the ledger's reading of a data dir.

The loop-mounted, real-daemon proof is tests/security/test_disk_admission.py; here the
numbers: what a sparse image still claims, the reserve, and when a quota is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ashd.errors import InsufficientStorage
from ashd.layout import Layout
from ashd.sandbox.admission import MIB, DiskFigures, DiskLedger, describe, growth, refusal, reserve_bytes
from ashd.states import SessionStatus
from ashd.store import Store


def test_growth_is_what_a_sparse_image_has_not_allocated_yet() -> None:
    assert growth(300 * MIB, 4 * MIB) == 296 * MIB
    assert growth(300 * MIB, 300 * MIB) == 0
    assert growth(300 * MIB, 301 * MIB) == 0  # the host's own metadata blocks: never negative


def test_reserve_is_the_larger_of_size_and_share() -> None:
    assert reserve_bytes(1000 * MIB, 64, 0) == 64 * MIB
    assert reserve_bytes(1000 * MIB, 64, 10) == 100 * MIB
    assert reserve_bytes(1000 * MIB, 0, 0) == 0


def test_headroom_subtracts_reserve_claims_and_pending() -> None:
    figures = DiskFigures(free=700 * MIB, reserve=64 * MIB, claimed=296 * MIB, pending=300 * MIB, images=1)
    assert figures.headroom == 40 * MIB


def test_a_quota_that_fits_exactly_is_admitted_one_byte_more_is_not() -> None:
    figures = DiskFigures(free=600 * MIB, reserve=100 * MIB, claimed=200 * MIB, pending=0, images=1)
    assert refusal(300 * MIB, figures) is None
    message = refusal(300 * MIB + 1, figures)
    assert message is not None
    for hint in ("sandbox.disk_mb", "ASH_SANDBOX_DISK_MB", "disk_reserve", "end sessions", "300 MiB"):
        assert hint in message, hint
    assert "600 MiB" not in message and "200 MiB" not in message  # daemon-wide figures: the operator's log only
    assert describe(figures) == "600 MiB free, 100 MiB reserve, 200 MiB claimed by 1 image(s), 0 MiB pending: " \
                                "300 MiB to promise"


def test_a_full_disk_refuses_even_a_small_quota() -> None:
    figures = DiskFigures(free=10 * MIB, reserve=64 * MIB, claimed=0, pending=0)
    assert figures.headroom < 0
    assert refusal(16 * MIB, figures) is not None


def _sparse(path: Path, size: int, written: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
        fh.write(b"\1" * written)
        fh.flush()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    return store


def _session(store: Store, sid: str, status: SessionStatus) -> None:
    store.create_session(tenant_id="default", session_id=sid, agent_name="a", status=status.value, sandbox_id=sid)


def test_ledger_counts_images_that_may_grow_and_skips_ended_and_orphaned(tmp_path: Path, store: Store) -> None:
    layout = Layout(tmp_path / "data")
    for sid, status in (("paused", SessionStatus.PAUSED), ("ended", SessionStatus.ENDED)):
        _session(store, sid, status)
    for sid in ("paused", "ended", "orphan", "live"):
        _sparse(layout.sandbox_dir(sid) / "disk.img", 64 * MIB, 1 * MIB)
    ledger = DiskLedger(layout, store, reserve_mb=8, reserve_percent=0)
    figures = ledger.figures({"new": 32 * MIB}, live={"live"})
    # paused (a stopped session resumes into its image) + live; not the ended one, not the
    # orphan (no session, no sandbox: a pre-warm that was never claimed).
    assert figures.images == 2
    assert 2 * 62 * MIB <= figures.claimed <= 2 * 63 * MIB
    assert figures.pending == 32 * MIB and figures.reserve == 8 * MIB


def test_ledger_refuses_what_the_disk_cannot_give(tmp_path: Path, store: Store) -> None:
    layout = Layout(tmp_path / "data")
    layout.data_dir.mkdir(parents=True)
    ledger = DiskLedger(layout, store, reserve_mb=0, reserve_percent=0)
    free = ledger.figures({}, live=()).free
    ledger.admit("small", 16, {}, live=())
    with pytest.raises(InsufficientStorage) as refused:
        ledger.admit("huge", free // MIB + 16, {}, live=())
    assert refused.value.status == 507 and refused.value.code == "insufficient_storage"
    assert str(tmp_path) not in refused.value.message  # no host path for the client
    # A pending promise counts: what fits alone does not fit beside it.
    half = free // MIB // 2 + 8
    ledger.admit("first", half, {}, live=())
    with pytest.raises(InsufficientStorage):
        ledger.admit("second", half, {"first": half * MIB}, live={"first"})


def test_a_transient_file_takes_from_the_same_headroom_as_an_image(tmp_path: Path, store: Store) -> None:
    layout = Layout(tmp_path / "data")
    layout.data_dir.mkdir(parents=True)
    ledger = DiskLedger(layout, store, reserve_mb=0, reserve_percent=0)
    free = ledger.figures({}, live=()).free
    ledger.admit_transient(1 * MIB, {}, live=())
    with pytest.raises(InsufficientStorage) as refused:
        ledger.admit_transient(free + 16 * MIB, {}, live=())
    assert refused.value.status == 507 and "file transfer" in refused.value.message
    assert str(tmp_path) not in refused.value.message
    # An image admitted but not made yet is a promise a transfer may not eat, and the other way round.
    half = free // 2 + 8 * MIB
    with pytest.raises(InsufficientStorage):
        ledger.admit_transient(half, {"image": half}, live=())
    with pytest.raises(InsufficientStorage):
        ledger.admit("image", half // MIB, {"transfer-1": half}, live=())

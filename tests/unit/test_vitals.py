"""The health rules as pure objects: when sandbox starts make ashd degraded, when it is ready."""

from __future__ import annotations

from ashd.actors.vitals import DEGRADED, OK, StartFailure, StartRecord, judge, readiness


def clock() -> str:
    return "2026-01-01T00:00:00.000Z"


def test_ok_until_the_threshold_of_failures_in_a_row_then_degraded_with_the_last_failure() -> None:
    budget = {"spent": False}
    record = StartRecord(degraded_after=3, budget_spent=lambda: budget["spent"], clock=clock)
    assert record.verdict().status == OK
    record.failed("t1", "s1", "disk full")
    record.failed("t1", "s2", "bridge never ready")
    assert record.verdict().status == OK
    record.failed("t1", "s3", "cannot set up the sandbox: no space left")
    verdict = record.verdict()
    assert verdict.status == DEGRADED
    assert verdict.reason == "the last 3 sandbox starts failed"
    assert verdict.last_failure == StartFailure("2026-01-01T00:00:00.000Z", "t1", "s3",
                                                "cannot set up the sandbox: no space left")


def test_one_successful_start_makes_it_ok_again_but_keeps_the_last_failure() -> None:
    record = StartRecord(degraded_after=2, clock=clock)
    for sid in ("a", "b", "c"):
        record.failed("t", sid, "boom")
    assert record.verdict().status == DEGRADED
    record.started()
    verdict = record.verdict()
    assert (verdict.status, verdict.reason) == (OK, None)
    assert verdict.last_failure is not None and verdict.last_failure.session_id == "c"
    record.failed("t", "d", "boom")
    assert record.verdict().status == OK  # one failure after a success is not a trend


def test_a_spent_restart_budget_is_degraded_whatever_the_starts_say() -> None:
    assert judge(0, 3, True, None).status == DEGRADED
    assert "restart budget" in (judge(0, 3, True, None).reason or "")
    assert judge(2, 3, False, None).status == OK
    assert judge(5, 3, False, None).status == DEGRADED


def test_another_tenants_failure_shows_only_when_it_happened() -> None:
    failure = StartFailure("2026-01-01T00:00:00.000Z", "tenant-a", "sess-1",
                           "agent process did not become ready\nlast log lines:\nsecret-ish output")
    assert failure.to_json("tenant-a") == {"at": failure.at, "sessionId": "sess-1",
                                           "reason": "agent process did not become ready"}
    other = failure.to_json("tenant-b")
    assert "sessionId" not in other and "secret" not in str(other) and other["at"] == failure.at


def test_ready_needs_a_tree_that_answers_and_no_shutdown_and_ignores_degraded_starts() -> None:
    assert readiness(True, False, 2.0).ready
    stuck = readiness(False, False, 2.0)
    assert not stuck.ready and "did not answer" in (stuck.reason or "")
    stopping = readiness(True, True, 2.0)
    assert not stopping.ready and "shutting down" in (stopping.reason or "")

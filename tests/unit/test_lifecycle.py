"""ashd/lifecycle.py: the session and sandbox state machines, without threads or a store."""

from __future__ import annotations

import pytest

from ashd.errors import BadRequest, Conflict, Gone
from ashd.lifecycle import SandboxLifecycle, SessionLifecycle
from ashd.states import SANDBOX_TRANSITIONS, SandboxState, SessionStatus

S, B = SessionStatus, SandboxState


def test_a_planned_change_applies_only_when_told() -> None:
    life = SessionLifecycle(S.STARTING)
    change = life.plan(S.ACTIVE, "sandbox ready")
    assert life.status is S.STARTING and change.before is S.STARTING and change.after is S.ACTIVE
    life.apply(change)
    assert life.status is S.ACTIVE


def test_only_error_and_paused_keep_their_reason() -> None:
    life = SessionLifecycle(S.ACTIVE)
    assert life.plan(S.PAUSED, "idle").status_reason == "idle"
    assert life.plan(S.ERROR, "crashed 4 times").status_reason == "crashed 4 times"
    assert life.plan(S.STOPPED, "stopped by request").status_reason is None


def test_forbidden_changes_raise_what_the_client_sees() -> None:
    with pytest.raises(BadRequest, match="paused; cannot move it to starting"):
        SessionLifecycle(S.PAUSED).plan(S.STARTING, "x")
    with pytest.raises(Gone):
        SessionLifecycle(S.ENDED).plan(S.ACTIVE, "x")


def test_turn_gate_one_turn_at_a_time_and_only_when_active() -> None:
    life = SessionLifecycle(S.PAUSED)
    with pytest.raises(BadRequest, match="Session is paused"):
        life.begin_turn()
    life.status = S.ACTIVE
    life.begin_turn()
    with pytest.raises(Conflict, match="already running"):
        life.begin_turn()
    with pytest.raises(Conflict, match="can be stopped"):
        life.check_idle("stopped")
    life.end_turn()
    life.check_idle("stopped")
    life.begin_turn()


def test_sandbox_walks_its_table() -> None:
    box = SandboxLifecycle()
    assert box.state is B.WARMING
    for to in (B.WARM, B.RUNNING, B.WAITING, B.RUNNING, B.WAITING, B.WARM, B.COLD, B.WARMING):
        assert box.transition(to) is True
    assert box.transition(B.WARMING) is False  # already there: no change, no error


@pytest.mark.parametrize(("start", "to"), [(B.WARMING, B.RUNNING), (B.WARMING, B.WAITING), (B.RUNNING, B.WARM),
                                           (B.COLD, B.RUNNING)])
def test_sandbox_refuses_what_the_table_forbids(start: SandboxState, to: SandboxState) -> None:
    box = SandboxLifecycle(start)
    with pytest.raises(ValueError, match=f"from {start.value} to {to.value}"):
        box.transition(to)
    assert box.state is start


def test_every_sandbox_state_can_go_cold() -> None:
    assert all(B.COLD in allowed for state, allowed in SANDBOX_TRANSITIONS.items() if state is not B.COLD)

"""SessionSupervisor's judgement of crashed session actors (fake clock): a new actor on
demand, the session in ``error`` after too many crashes of it or of its tenant's sessions
(a restart budget per tenant), and escalation to the root (the supervisor crashes itself)
only when two tenants' budgets are spent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pykka
import pytest

from ashd.actors.children import SupervisionRecord
from ashd.actors.root import TreePolicy
from ashd.actors.session_deps import SessionDeps
from ashd.actors.supervisor import SessionSupervisor
from ashd.config import SupervisionConfig
from ashd.layout import Layout
from ashd.policy import ManualClock
from ashd.store import Store

TENANT = "default"


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


class Rig:
    def __init__(self, tmp_path: Path, config: SupervisionConfig) -> None:
        self.store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        self.store.migrate()
        self.record = SupervisionRecord()
        self.crashes: list[str] = []
        self.crashed = threading.Event()
        unused: Any = None  # what session_crashed never touches: no actor is started here
        deps = SessionDeps(store=self.store, pool=unused, layout=Layout(tmp_path), model=unused, sandbox=unused,
                           ready_timeout_s=1, stop_timeout_s=1, snapshots=unused, restarts=unused)
        self.ref = SessionSupervisor.start(deps, TreePolicy.for_sessions(config, clock=ManualClock()),
                                           self.record, self.report)
        self.sessions = self.ref.proxy()

    def report(self, detail: str) -> None:
        self.crashes.append(detail)
        self.crashed.set()

    def session(self, session_id: str) -> str:
        self.store.create_session(tenant_id=TENANT, session_id=session_id, agent_name="a", status="active")
        return session_id

    def crash(self, session_id: str) -> None:
        self.sessions.session_crashed(session_id, TENANT, "InjectedFault: test").get(timeout=10)

    def status(self, session_id: str) -> tuple[str, str | None]:
        row = self.store.get_session(TENANT, session_id)
        assert row is not None
        return row.status, row.status_reason


def test_a_crashed_session_actor_is_counted_and_replaced_on_demand(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SupervisionConfig(session_intensity=3))
    sid = rig.session("s1")
    rig.crash(sid)
    assert cast(dict[str, int], rig.record.to_json()["restarts"])["session"] == 1
    assert rig.status(sid) == ("active", None)


def test_a_session_whose_actor_keeps_crashing_goes_to_error(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SupervisionConfig(session_intensity=2, budget_limit=100))
    sid = rig.session("s1")
    for _ in range(3):
        rig.crash(sid)
    status, reason = rig.status(sid)
    assert status == "error" and reason is not None and "session actor exited 3 times" in reason
    assert rig.ref.is_alive() and rig.crashes == []  # one bad session does not take the others down


def test_two_tenants_crashing_beyond_their_budgets_escalate_to_the_root(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SupervisionConfig(session_intensity=5, budget_limit=2))
    for n in range(3):  # the first tenant's budget is spent (its third crash fails its session)
        rig.crash(rig.session(f"s{n}"))
    for n in range(2):
        rig.store.create_session(tenant_id="second", session_id=f"t{n}", agent_name="a", status="active")
        rig.sessions.session_crashed(f"t{n}", "second", "again").get(timeout=10)
    assert rig.ref.is_alive()
    rig.store.create_session(tenant_id="second", session_id="t2", agent_name="a", status="active")
    rig.sessions.session_crashed.defer("t2", "second", "again")  # a tell, as the actors send it
    assert rig.crashed.wait(10)
    assert "Escalated" in rig.crashes[0] and "restart budget spent" in rig.crashes[0]
    assert not rig.ref.is_alive()


def test_one_tenants_crash_loop_fails_its_own_sessions_and_never_another_tenants(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SupervisionConfig(session_intensity=5, budget_limit=2))
    for n in range(2):
        rig.crash(rig.session(f"s{n}"))
    looping = rig.session("s2")
    rig.crash(looping)  # the tenant's budget is spent: this session fails, the supervisor stays
    status, reason = rig.status(looping)
    assert status == "error" and reason is not None and f"the budget of {TENANT} alone" in reason
    assert rig.ref.is_alive() and rig.crashes == []
    rig.store.create_session(tenant_id="quiet", session_id="q1", agent_name="a", status="active")
    rig.sessions.session_crashed("q1", "quiet", "InjectedFault: once").get(timeout=10)
    quiet = rig.store.get_session("quiet", "q1")
    assert quiet is not None and quiet.status == "active"  # restarted on demand: its own budget
    assert cast(dict[str, int], rig.record.to_json()["restarts"])["session"] == 3

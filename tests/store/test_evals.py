"""Eval cases, runs and results in the store (SQLite and Postgres): tenant scoping,
progress counts, the start-up sweep of runs a stopped daemon left running."""

from __future__ import annotations

import json

from ashd.store import Store
from ashd.store import eval_queries as q


def _case(store: Store, tenant: str, name: str, **over: object) -> q.EvalCaseRow:
    values = {"name": name, "prompt": f"[[say: {name}]]", "scorer": "contains", "expected": json.dumps(name),
              "category": None, "tags": "[]", **over}
    return store.write_with(q.add_case, tenant, "bot", values, store.now())


def test_cases_are_scoped_to_tenant_and_agent(store: Store) -> None:
    mine = _case(store, "acme", "greets", category="smoke", tags='["fast"]')
    assert store.read_with(q.get_case, "acme", "bot", mine.id) == mine
    assert store.read_with(q.get_case, "other", "bot", mine.id) is None
    assert store.read_with(q.get_case, "acme", "other-bot", mine.id) is None
    assert store.read_with(q.list_cases, "other", "bot") == []
    assert store.read_with(q.update_case, "other", "bot", mine.id, {"name": "x"}, store.now()) is None
    assert store.read_with(q.get_case, "acme", "bot", mine.id) == mine  # unchanged by the other tenant
    assert store.write_with(q.delete_case, "other", "bot", mine.id) is False
    changed = store.write_with(q.update_case, "acme", "bot", mine.id, {"name": "renamed"}, store.now())
    assert changed is not None and changed.name == "renamed" and changed.updated_at > mine.updated_at
    assert store.write_with(q.delete_case, "acme", "bot", mine.id) is True
    assert store.read_with(q.list_cases, "acme", "bot") == []


def test_import_adds_every_case_in_the_order_given(store: Store) -> None:
    values = [{"name": n, "prompt": "p", "scorer": "exact", "expected": '"x"', "category": None, "tags": "[]"}
              for n in ("c", "b", "a", "d", "e")]
    rows = store.write_with(q.add_cases, "acme", "bot", values, store.now())
    assert [r.name for r in rows] == ["c", "b", "a", "d", "e"]
    assert [r.id for r in store.read_with(q.list_cases, "acme", "bot")] == [r.id for r in rows]


def test_a_run_has_one_pending_result_per_case_and_counts_progress(store: Store) -> None:
    cases = [_case(store, "acme", n) for n in ("one", "two", "three")]
    run = store.write_with(q.add_run, "acme", "bot", 2, '{"categories": [], "tags": []}', cases, store.now())
    assert (run.status, run.total_cases, run.version_number) == ("running", 3, 2)
    assert store.read_with(q.get_run, "other", "bot", run.id) is None
    assert store.read_with(q.list_runs, "other", "bot", 10) == []
    assert store.read_with(q.list_results, "other", run.id) == []
    results = store.read_with(q.list_results, "acme", run.id)
    assert sorted(r.case_name for r in results) == ["one", "three", "two"]
    assert {r.status for r in results} == {"pending"}
    store.write_with(q.update_result, results[0].id, {"status": "passed", "score": 1.0})
    store.write_with(q.update_result, results[1].id, {"status": "running"})
    assert store.read_with(q.counts, run.id) == {"pending": 1, "running": 1, "passed": 1, "failed": 0, "error": 0}
    assert store.read_with(q.get_result, "acme", "bot", results[0].id).score == 1.0  # type: ignore[union-attr]
    assert store.read_with(q.get_result, "other", "bot", results[0].id) is None
    assert store.read_with(q.get_result, "acme", "other-bot", results[0].id) is None
    assert store.write_with(q.finish_run, run.id, "completed", None, store.now()) is True
    assert store.write_with(q.finish_run, run.id, "failed", "late", store.now()) is False  # only from running
    assert store.write_with(q.score_run, run.id, 4, "fine") == 3
    assert {(r.human_score, r.human_notes) for r in store.read_with(q.list_results, "acme", run.id)} == {(4, "fine")}


def test_runs_left_running_become_interrupted_with_the_reason(store: Store) -> None:
    cases = [_case(store, "acme", n) for n in ("one", "two")]
    left = store.write_with(q.add_run, "acme", "bot", None, "{}", cases, store.now())
    done = store.write_with(q.add_run, "acme", "bot", None, "{}", cases[:1], store.now())
    first = store.read_with(q.list_results, "acme", left.id)[0]
    store.write_with(q.update_result, first.id, {"status": "passed"})
    store.write_with(q.finish_run, done.id, "completed", None, store.now())
    assert store.write_with(q.interrupt_running, "ashd restarted", store.now()) == 1
    run = store.read_with(q.get_run, "acme", "bot", left.id)
    assert run is not None and (run.status, run.error) == ("interrupted", "ashd restarted")
    assert run.completed_at is not None
    by_status = {r.status: r.reason for r in store.read_with(q.list_results, "acme", left.id)}
    assert by_status == {"passed": None, "error": "ashd restarted"}
    assert store.read_with(q.get_run, "acme", "bot", done.id).status == "completed"  # type: ignore[union-attr]
    newest_first = [r.id for r in store.read_with(q.list_runs, "acme", "bot", 10)]
    assert newest_first == [done.id, left.id]


def test_a_stopping_daemon_interrupts_only_its_own_runs(store: Store) -> None:
    cases = [_case(store, "acme", "one")]
    mine = store.write_with(q.add_run, "acme", "bot", None, "{}", cases, store.now())
    theirs = store.write_with(q.add_run, "acme", "bot", None, "{}", cases, store.now())
    assert store.write_with(q.interrupt_running, "ashd stopped", store.now(), [mine.id]) == 1
    assert store.read_with(q.get_run, "acme", "bot", mine.id).status == "interrupted"  # type: ignore[union-attr]
    assert store.read_with(q.get_run, "acme", "bot", theirs.id).status == "running"  # type: ignore[union-attr]
    assert {r.status for r in store.read_with(q.list_results, "acme", theirs.id)} == {"pending"}

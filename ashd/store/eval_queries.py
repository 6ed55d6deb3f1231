"""Eval cases, runs and results (Ash's ``eval_cases``, ``eval_runs``, ``eval_results``).

Functions run inside the caller's transaction; every read and write names the tenant
(Ash matched eval rows by agent name only). Run statuses: ``running`` -> ``completed`` |
``failed`` | ``interrupted`` (the daemon stopped under it; marked at the next start).
Result statuses: ``pending`` -> ``running`` -> ``passed`` | ``failed`` | ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .coordinators import claimed
from .dialect import new_id
from .schema import metadata
from .timestamps import format_utc

RUN_STATUSES = ("running", "completed", "failed", "interrupted")
RESULT_STATUSES = ("pending", "running", "passed", "failed", "error")
DONE_RESULTS = ("passed", "failed", "error")


def _id(name: str = "id", *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), primary_key=name == "id", nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


eval_cases = sa.Table(
    "eval_cases", metadata,
    _id(), _text("tenant_id"), _text("agent_name"), _text("name"), _text("prompt"),
    _text("scorer"), _text("expected"), _text("category", nullable=True), _text("tags"),
    _text("created_at"), _text("updated_at"),
    sa.Index("ix_eval_cases_tenant_agent", "tenant_id", "agent_name"),
)

eval_runs = sa.Table(
    "eval_runs", metadata,
    _id(), _text("tenant_id"), _text("agent_name"),
    sa.Column("version_number", sa.Integer(), nullable=True),
    _text("status"), _text("filters"),
    sa.Column("total_cases", sa.Integer(), nullable=False),
    _text("error", nullable=True), _text("created_at"), _text("completed_at", nullable=True),
    _text("claimed_by", nullable=True),  # the coordinator driving it (ashd/store/coordinators.py)
    sa.Index("ix_eval_runs_tenant_agent", "tenant_id", "agent_name"),
)

eval_results = sa.Table(
    "eval_results", metadata,
    _id(), _text("tenant_id"),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("eval_runs.id", ondelete="CASCADE",
                                                     name="fk_eval_results_run_id"), nullable=False),
    _id("case_id"), _text("case_name"), _id("session_id", nullable=True), _text("status"),
    _text("output", nullable=True), sa.Column("score", sa.Float(), nullable=True),
    _text("reason", nullable=True),
    sa.Column("human_score", sa.Integer(), nullable=True), _text("human_notes", nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    _text("created_at"), _text("completed_at", nullable=True),
    sa.Index("ix_eval_results_run", "run_id"),
)


def _from(cls: type[Any], m: Mapping[Any, Any]) -> Any:
    return cls(**{f.name: m[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class EvalCaseRow:
    id: str
    tenant_id: str
    agent_name: str
    name: str
    prompt: str
    scorer: str
    expected: str  # JSON text: the scorer's argument (string, or a JSON Schema object)
    category: str | None
    tags: str  # JSON text: a list of strings
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class EvalRunRow:
    id: str
    tenant_id: str
    agent_name: str
    version_number: int | None
    status: str
    filters: str  # JSON text: {"categories": [...], "tags": [...]}
    total_cases: int
    error: str | None
    created_at: str
    completed_at: str | None


@dataclass(frozen=True, slots=True)
class EvalResultRow:
    id: str
    tenant_id: str
    run_id: str
    case_id: str
    case_name: str
    session_id: str | None
    status: str
    output: str | None
    score: float | None
    reason: str | None
    human_score: int | None
    human_notes: str | None
    duration_ms: int | None
    created_at: str
    completed_at: str | None


# -- cases ------------------------------------------------------------------------------

def add_case(conn: Connection, tenant_id: str, agent_name: str, values: Mapping[str, Any],
             now: str) -> EvalCaseRow:
    """``values``: name, prompt, scorer, expected, category, tags (already validated)."""
    row = {"id": new_id(), "tenant_id": tenant_id, "agent_name": agent_name, **values,
           "created_at": now, "updated_at": now}
    conn.execute(sa.insert(eval_cases).values(**row))
    return _from(EvalCaseRow, row)


def add_cases(conn: Connection, tenant_id: str, agent_name: str, values: Sequence[Mapping[str, Any]],
              now: str) -> list[EvalCaseRow]:
    """Several cases, all or none (import). They are listed in the order given: each is
    stamped one millisecond after the one before."""
    start = datetime.strptime(now, "%Y-%m-%dT%H:%M:%S.%f%z")
    return [add_case(conn, tenant_id, agent_name, v, format_utc(start + timedelta(milliseconds=i)))
            for i, v in enumerate(values)]


def get_case(conn: Connection, tenant_id: str, agent_name: str, case_id: str) -> EvalCaseRow | None:
    t = eval_cases.c
    m = conn.execute(sa.select(eval_cases).where(t.id == case_id, t.tenant_id == tenant_id,
                                                 t.agent_name == agent_name)).mappings().one_or_none()
    return None if m is None else _from(EvalCaseRow, m)


def list_cases(conn: Connection, tenant_id: str, agent_name: str) -> list[EvalCaseRow]:
    t = eval_cases.c
    stmt = (sa.select(eval_cases).where(t.tenant_id == tenant_id, t.agent_name == agent_name)
            .order_by(t.created_at, t.id))
    return [_from(EvalCaseRow, m) for m in conn.execute(stmt).mappings()]


def update_case(conn: Connection, tenant_id: str, agent_name: str, case_id: str,
                changes: Mapping[str, Any], now: str) -> EvalCaseRow | None:
    t = eval_cases.c
    conn.execute(sa.update(eval_cases).where(t.id == case_id, t.tenant_id == tenant_id,
                                             t.agent_name == agent_name).values(**changes, updated_at=now))
    return get_case(conn, tenant_id, agent_name, case_id)


def delete_case(conn: Connection, tenant_id: str, agent_name: str, case_id: str) -> bool:
    t = eval_cases.c
    stmt = sa.delete(eval_cases).where(t.id == case_id, t.tenant_id == tenant_id, t.agent_name == agent_name)
    return conn.execute(stmt).rowcount == 1


# -- runs and results -------------------------------------------------------------------

def add_run(conn: Connection, tenant_id: str, agent_name: str, version_number: int | None, filters: str,
            cases: list[EvalCaseRow], now: str, claimed_by: str | None = None) -> EvalRunRow:
    """A ``running`` run with one ``pending`` result per case, in one transaction; ``claimed_by``:
    the coordinator that drives it (recovered only once that one is gone)."""
    run = {"id": new_id(), "tenant_id": tenant_id, "agent_name": agent_name, "version_number": version_number,
           "status": "running", "filters": filters, "total_cases": len(cases), "error": None,
           "created_at": now, "completed_at": None}
    conn.execute(sa.insert(eval_runs).values(**run, claimed_by=claimed_by))
    results = [{"id": new_id(), "tenant_id": tenant_id, "run_id": run["id"], "case_id": c.id,
                "case_name": c.name, "session_id": None, "status": "pending", "output": None, "score": None,
                "reason": None, "human_score": None, "human_notes": None, "duration_ms": None,
                "created_at": now, "completed_at": None} for c in cases]
    if results:
        conn.execute(sa.insert(eval_results), results)
    return _from(EvalRunRow, run)


def get_run(conn: Connection, tenant_id: str, agent_name: str, run_id: str) -> EvalRunRow | None:
    t = eval_runs.c
    m = conn.execute(sa.select(eval_runs).where(t.id == run_id, t.tenant_id == tenant_id,
                                                t.agent_name == agent_name)).mappings().one_or_none()
    return None if m is None else _from(EvalRunRow, m)


def list_runs(conn: Connection, tenant_id: str, agent_name: str, limit: int) -> list[EvalRunRow]:
    t = eval_runs.c
    stmt = (sa.select(eval_runs).where(t.tenant_id == tenant_id, t.agent_name == agent_name)
            .order_by(t.created_at.desc(), t.id).limit(limit))
    return [_from(EvalRunRow, m) for m in conn.execute(stmt).mappings()]


def finish_run(conn: Connection, run_id: str, status: str, error: str | None, now: str) -> bool:
    """running -> completed | failed."""
    t = eval_runs.c
    stmt = (sa.update(eval_runs).where(t.id == run_id, t.status == "running")
            .values(status=status, error=error, completed_at=now))
    return conn.execute(stmt).rowcount == 1


def interrupt_running(conn: Connection, reason: str, now: str, run_ids: Sequence[str] | None = None,
                      claimed_by: Sequence[str | None] | None = None) -> int:
    """``running`` runs (all tenants; only ``run_ids`` if given; only those claimed by one of
    ``claimed_by`` if given, None for unclaimed) become ``interrupted``, and their unfinished
    results ``error``, with ``reason``. At start-up: what a stopped daemon left."""
    r, t = eval_results.c, eval_runs.c
    chosen = [t.status == "running"] if run_ids is None else [t.status == "running", t.id.in_(list(run_ids))]
    if claimed_by is not None:
        chosen.append(claimed(t.claimed_by, claimed_by))
    running = sa.select(t.id).where(*chosen)
    conn.execute(sa.update(eval_results).where(r.run_id.in_(running), r.status.in_(("pending", "running")))
                 .values(status="error", reason=reason, completed_at=now))
    stmt = sa.update(eval_runs).where(*chosen).values(status="interrupted", error=reason, completed_at=now)
    return int(conn.execute(stmt).rowcount)


def counts(conn: Connection, run_id: str) -> dict[str, int]:
    """Results of a run by status (every status present, 0 if none)."""
    r = eval_results.c
    out = dict.fromkeys(RESULT_STATUSES, 0)
    stmt = sa.select(r.status, sa.func.count()).where(r.run_id == run_id).group_by(r.status)
    for status, count in conn.execute(stmt):
        out[status] = int(count)
    return out


def list_results(conn: Connection, tenant_id: str, run_id: str) -> list[EvalResultRow]:
    r = eval_results.c
    stmt = (sa.select(eval_results).where(r.run_id == run_id, r.tenant_id == tenant_id)
            .order_by(r.case_name, r.id))
    return [_from(EvalResultRow, m) for m in conn.execute(stmt).mappings()]


def get_result(conn: Connection, tenant_id: str, agent_name: str, result_id: str) -> EvalResultRow | None:
    """A result of one of the tenant's runs of ``agent_name``."""
    r, t = eval_results.c, eval_runs.c
    stmt = (sa.select(eval_results).join(eval_runs, t.id == r.run_id)
            .where(r.id == result_id, r.tenant_id == tenant_id, t.agent_name == agent_name))
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else _from(EvalResultRow, m)


def update_result(conn: Connection, result_id: str, changes: Mapping[str, Any]) -> None:
    conn.execute(sa.update(eval_results).where(eval_results.c.id == result_id).values(**changes))


def score_run(conn: Connection, run_id: str, human_score: int, human_notes: str | None) -> int:
    """A human score for every result of a run; the number of results scored."""
    stmt = (sa.update(eval_results).where(eval_results.c.run_id == run_id)
            .values(human_score=human_score, human_notes=human_notes))
    return int(conn.execute(stmt).rowcount)

"""SQL for ``runners``: the registry coordinators route sessions by (docs/scale-out.md).

Functions run inside the caller's transaction (``Store.read_with`` / ``Store.write_with``).
A runner is alive while its ``last_heartbeat_at`` is after a cutoff the caller computes from
the store's clock (now minus ``cluster.liveness_timeout_s``); stored timestamps sort in time
order, so the comparison is plain SQL on both backends. A runner that left (deregistered or
swept) keeps its row, marked ``gone`` and invisible to every function but :func:`register`,
so its generation only ever rises.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .rows import RunnerRow
from .schema import runners, sessions
from .timestamps import format_utc

_FREE = runners.c.max_sandboxes - runners.c.active_count - runners.c.warming_count
_HERE = runners.c.gone.is_(False)
LIVE_SESSION_STATUSES = ("active", "starting")


def register(conn: Connection, runner_id: str, host: str, port: int, max_sandboxes: int, now: str) -> RunnerRow:
    """Add the runner, or renew it with a higher generation (counts reset, draining kept)."""
    old = get(conn, runner_id, for_update=True, include_gone=True)
    values = dict(host=host, port=port, max_sandboxes=max_sandboxes, active_count=0, warming_count=0,
                  last_heartbeat_at=now, registered_at=now, gone=False)
    if old is None:
        conn.execute(sa.insert(runners).values(id=runner_id, generation=1, draining=False, **values))
    else:
        conn.execute(sa.update(runners).where(runners.c.id == runner_id)
                     .values(generation=old.generation + 1, **values))
    row = get(conn, runner_id)
    assert row is not None
    return row


def heartbeat(conn: Connection, runner_id: str, active_count: int, warming_count: int, now: str,
              generation: int | None = None) -> RunnerRow | None:
    """Record the runner's figures; None when it is not registered (under ``generation``, if
    given): it was swept or replaced, and must register again."""
    stmt = sa.update(runners).where(runners.c.id == runner_id, _HERE)
    if generation is not None:
        stmt = stmt.where(runners.c.generation == generation)
    found = conn.execute(stmt.values(active_count=max(0, active_count), warming_count=max(0, warming_count),
                                     last_heartbeat_at=now))
    return get(conn, runner_id) if found.rowcount else None


def cutoff(now: str, timeout_s: float) -> str:
    """The stored timestamp ``timeout_s`` before ``now``: runners heard from after it are alive."""
    return format_utc(_parse(now) - timedelta(seconds=timeout_s))


def age_s(stamp: str, now: str) -> float:
    """Seconds from ``stamp`` to ``now`` (both stored timestamps)."""
    return (_parse(now) - _parse(stamp)).total_seconds()


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def deregister(conn: Connection, runner_id: str, reason: str, generation: int | None = None) -> list[str]:
    """Remove the runner; its live sessions become ``paused`` (resumable elsewhere). Their ids.
    With ``generation``, only that registration is removed (a late deregistration of a runner
    that has registered again since is ignored: [])."""
    if generation is not None:
        row = get(conn, runner_id, for_update=True)
        if row is None or row.generation != generation:
            return []
    paused = pause_sessions_of(conn, runner_id, reason)
    conn.execute(sa.update(runners).where(runners.c.id == runner_id).values(gone=True, active_count=0,
                                                                             warming_count=0))
    return paused


def pause_sessions_of(conn: Connection, runner_id: str, reason: str) -> list[str]:
    stmt = (sa.update(sessions)
            .where(sessions.c.runner_id == runner_id, sessions.c.status.in_(LIVE_SESSION_STATUSES))
            .values(status="paused", status_reason=reason)
            .returning(sessions.c.id))
    return sorted(conn.execute(stmt).scalars())


def get(conn: Connection, runner_id: str, *, for_update: bool = False, include_gone: bool = False) -> RunnerRow | None:
    stmt = sa.select(runners).where(runners.c.id == runner_id)
    if not include_gone:
        stmt = stmt.where(_HERE)
    if for_update:
        stmt = stmt.with_for_update()
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else RunnerRow.from_db(m)


def list_all(conn: Connection) -> list[RunnerRow]:
    stmt = sa.select(runners).where(_HERE).order_by(runners.c.id)
    return [RunnerRow.from_db(m) for m in conn.execute(stmt).mappings()]


def live(conn: Connection, cutoff: str) -> list[RunnerRow]:
    stmt = sa.select(runners).where(_HERE, runners.c.last_heartbeat_at > cutoff).order_by(runners.c.id)
    return [RunnerRow.from_db(m) for m in conn.execute(stmt).mappings()]


def pick(conn: Connection, cutoff: str) -> RunnerRow | None:
    """The least-loaded live runner that takes new sessions, with one warming slot reserved
    on it, in one statement: on Postgres the candidate row is locked (``FOR UPDATE SKIP
    LOCKED``), so two coordinators never book the same last slot. None: no runner has room.
    The caller gives the slot back with :func:`release_warming` once the start ends."""
    takes = sa.and_(_HERE, runners.c.last_heartbeat_at > cutoff, runners.c.draining.is_(False), _FREE > 0)
    best = (sa.select(runners.c.id).where(takes).order_by(_FREE.desc(), runners.c.id).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery())
    stmt = (sa.update(runners).where(runners.c.id == best, takes)
            .values(warming_count=runners.c.warming_count + 1).returning(*runners.c))
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else RunnerRow.from_db(m)


def takers(conn: Connection, cutoff: str) -> list[str]:
    """The live runners that take new sessions and have a free slot (read only, no lock:
    a hint for the drain, which places through :func:`pick` afterwards)."""
    takes = sa.and_(_HERE, runners.c.last_heartbeat_at > cutoff, runners.c.draining.is_(False), _FREE > 0)
    return list(conn.execute(sa.select(runners.c.id).where(takes).order_by(_FREE.desc(), runners.c.id)).scalars())


def release_warming(conn: Connection, runner_id: str) -> None:
    conn.execute(sa.update(runners).where(runners.c.id == runner_id, runners.c.warming_count > 0)
                 .values(warming_count=runners.c.warming_count - 1))


def set_draining(conn: Connection, runner_id: str, draining: bool) -> RunnerRow | None:
    """Mark whether the runner takes new sessions; None if it is not registered."""
    conn.execute(sa.update(runners).where(runners.c.id == runner_id, _HERE).values(draining=draining))
    return get(conn, runner_id)


def sweep(conn: Connection, cutoff: str) -> dict[str, list[str]]:
    """Remove every runner not heard from since ``cutoff`` and pause its live sessions.
    Idempotent (several coordinators may sweep at once): dead runner id -> sessions paused."""
    dead = conn.execute(sa.select(runners.c.id).where(_HERE, runners.c.last_heartbeat_at <= cutoff)
                        .with_for_update(skip_locked=True)).scalars().all()
    return {runner_id: deregister(conn, runner_id, f"runner {runner_id} stopped answering heartbeats")
            for runner_id in dead}


def assign(conn: Connection, tenant_id: str, session_id: str, runner_id: str) -> None:
    """Record that the session's sandbox now lives on ``runner_id`` (Ash's ``runnerId``)."""
    conn.execute(sa.update(sessions).where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
                 .values(runner_id=runner_id))

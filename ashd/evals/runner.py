"""Eval runs: each case in a fresh session, in parallel, scored as it ends (loop thread only).

A run is started by ``POST /api/agents/:name/eval-runs``: the run row and one ``pending``
result per case are stored together, then one asyncio task drives the run. Its cases run
at most ``evals.concurrency`` at a time across all runs of this daemon (and never more than
the pool holds); each gets a new session of the agent created with the run's pinned system
prompt (the version under test, fixed when the run was created), runs its prompt as one turn
with the same machinery as ``POST /messages`` (``SessionRuntime.send``), and the
session is ended at once. Progress is the results' statuses, pollable at any time.

A daemon that stops mid-run cancels its runs and marks them ``interrupted``; a daemon that
died has them marked at its next start, or by another coordinator on the same Postgres once
it is gone (``ashd/store/recovery.py``), so no run stays ``running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

from ashd.errors import AshError, Unavailable
from ashd.evals.grader import Grader, GraderError, Verdict
from ashd.evals.scorers import Score, score_locally
from ashd.http.context import AppContext
from ashd.options import MessageOptions, SessionOptions
from ashd.proxy.meter import Usage
from ashd.store import eval_queries as q

log = logging.getLogger(__name__)

STOPPED = "ashd stopped while the run was in progress"
CAPACITY_RETRIES = 5  # a full pool: wait and try the case's session again this many times
CAPACITY_WAIT_S = 2.0


@dataclass(frozen=True)
class RunPlan:
    """What a run needs, fixed when it was created."""

    tenant_id: str
    agent_name: str
    run_id: str
    system_prompt: str | None  # the pinned version's prompt; None: the agent's CLAUDE.md
    cases: tuple[q.EvalCaseRow, ...]
    results: tuple[str, ...]  # result id per case, same order


def answer_of(messages: list[str]) -> str:
    """The agent's answer from a turn's stored message contents (pure): the ``result``
    message's text, else the text blocks of its assistant messages."""
    texts: list[str] = []
    for content in messages:
        try:
            raw = json.loads(content)
        except ValueError:
            continue
        if raw.get("type") == "result" and isinstance(raw.get("result"), str):
            return str(raw["result"])
        if raw.get("type") == "assistant":
            blocks = (raw.get("message") or {}).get("content") or raw.get("content") or []
            texts.extend(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    return "".join(texts)


def usage_values(usage: Usage) -> dict[str, float]:
    """A grader call's usage as usage events (the model proxy's metrics)."""
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_creation_tokens": usage.cache_creation_tokens, "cache_read_tokens": usage.cache_read_tokens,
            "message": 1, "cost_usd": usage.cost_usd}


async def score_case(case: q.EvalCaseRow, answer: str, grader: Grader) -> Verdict:
    """Score an answer with the case's scorer; only ``rubric`` asks the grader (GraderError)."""
    expected = json.loads(case.expected)
    if case.scorer != "rubric":
        return Verdict(score_locally(case.scorer, expected, answer), None)
    return await grader.grade(str(expected), case.prompt, answer)


class EvalRunner:
    def __init__(self, ctx: AppContext, grader: Grader) -> None:
        self._ctx = ctx
        self._grader = grader
        width = max(1, min(ctx.config.evals.concurrency, ctx.config.pool.max_sandboxes))
        self._slots = asyncio.Semaphore(width)
        self._runs: dict[str, asyncio.Task[None]] = {}

    def start(self, plan: RunPlan) -> None:
        """Drive a stored run to its end in the background."""
        task = asyncio.ensure_future(self._run(plan))
        self._runs[plan.run_id] = task
        task.add_done_callback(lambda _: self._runs.pop(plan.run_id, None))

    async def stop(self) -> None:
        """Cancel the running runs and mark them ``interrupted`` (graceful stop)."""
        tasks = dict(self._runs)
        for task in tasks.values():
            task.cancel()
        for run_id, task in tasks.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.warning("eval run %s interrupted: %s", run_id, STOPPED)
        if tasks:
            store, ids = self._ctx.store, list(tasks)
            await self._ctx.offload.write(lambda: store.write_with(q.interrupt_running, STOPPED, store.now(), ids))

    async def _run(self, plan: RunPlan) -> None:
        store, offload = self._ctx.store, self._ctx.offload
        log.info("eval run %s of agent %s: %d case(s)", plan.run_id, plan.agent_name, len(plan.cases))
        status, error = "completed", None
        try:
            await asyncio.gather(*(self._case(plan, case, rid) for case, rid in zip(plan.cases, plan.results,
                                                                                     strict=True)))
        except Exception as exc:  # boundary: the run fails, the daemon stays up
            log.exception("eval run %s failed", plan.run_id)
            status, error = "failed", f"internal error: {type(exc).__name__}"
        await offload.write(lambda: store.write_with(q.finish_run, plan.run_id, status, error, store.now()))
        log.info("eval run %s %s", plan.run_id, status)

    async def _case(self, plan: RunPlan, case: q.EvalCaseRow, result_id: str) -> None:
        async with self._slots:
            started = time.monotonic()
            try:
                changes = await self._attempt(plan, case, result_id)
            except Exception as exc:  # boundary: one broken case must not stop the others
                log.exception("eval run %s: case %s failed unexpectedly", plan.run_id, case.id)
                changes = {"status": "error", "reason": f"internal error: {type(exc).__name__}",
                           "completed_at": self._ctx.store.now()}
            changes["duration_ms"] = int((time.monotonic() - started) * 1000)
            await self._update(result_id, **changes)

    async def _attempt(self, plan: RunPlan, case: q.EvalCaseRow, result_id: str) -> dict[str, object]:
        """Run and score one case; the result row's changes."""
        await self._update(result_id, status="running")
        session_id, answer, failure = None, None, None
        try:
            session_id = await self._session(plan, result_id)
            answer, failure = await self._turn(plan.tenant_id, session_id, case.prompt)
        except AshError as exc:  # capacity, a sandbox that would not start, the agent gone, ...
            failure = exc.message
        except Exception:
            if session_id is not None:
                await self._end(plan.tenant_id, session_id)
            raise
        # Not on cancellation (ashd stopping): the actor tree's stop ends every sandbox.
        if session_id is not None:
            await self._end(plan.tenant_id, session_id)
        return await self._verdict(plan, case, answer, failure)

    async def _session(self, plan: RunPlan, result_id: str) -> str:
        ctx = self._ctx
        agent = await ctx.offload.read(ctx.store.get_agent, plan.tenant_id, plan.agent_name)
        if agent is None:
            raise Unavailable(f"Agent {plan.agent_name} no longer exists")
        options = SessionOptions(system_prompt=plan.system_prompt)
        for attempt in range(CAPACITY_RETRIES + 1):
            try:
                session = await ctx.runtime.create(plan.tenant_id, agent, options, may_use_prewarmed=False)
            except Unavailable:  # the pool is full: other work holds every sandbox
                if attempt == CAPACITY_RETRIES:
                    raise
                await asyncio.sleep(CAPACITY_WAIT_S * (attempt + 1))
                continue
            await self._update(result_id, session_id=session.id)
            return session.id
        raise AssertionError("unreachable")

    async def _turn(self, tenant: str, session_id: str, prompt: str) -> tuple[str, str | None]:
        """Run the case's prompt as one turn; (the answer, the turn's failure or None)."""
        ctx = self._ctx
        turn = await ctx.runtime.send(tenant, session_id, MessageOptions.from_request({"content": prompt}))
        await turn.ended()
        rows = await ctx.offload.read(ctx.store.list_messages, tenant, session_id, 1000, 0)
        return answer_of([r.content for r in rows]), turn.failure

    async def _end(self, tenant: str, session_id: str) -> None:
        """End the case's session (frees its sandbox); a failure here only costs capacity."""
        try:
            await self._ctx.runtime.end(tenant, session_id)
        except Exception:  # boundary: the run goes on
            log.exception("eval: ending session %s failed", session_id)

    async def _verdict(self, plan: RunPlan, case: q.EvalCaseRow, answer: str | None,
                       failure: str | None) -> dict[str, object]:
        """The result row's changes: the score, or ``error`` with the reason."""
        done: dict[str, object] = {"output": answer, "completed_at": self._ctx.store.now()}
        if failure is not None or answer is None:
            return {**done, "status": "error", "reason": failure or "the turn gave no answer", "score": None}
        try:
            score = await self._score(plan, case, answer)
        except GraderError as exc:
            return {**done, "status": "error", "reason": str(exc), "score": None}
        return {**done, "status": "passed" if score.passed else "failed", "score": score.score,
                "reason": score.reason}

    async def _score(self, plan: RunPlan, case: q.EvalCaseRow, answer: str) -> Score:
        verdict = await score_case(case, answer, self._grader)
        if verdict.usage is not None:
            ctx, usage = self._ctx, verdict.usage
            # Attributed to the run: GET /api/usage?sessionId=<run id> lists what grading cost.
            await ctx.offload.write(ctx.store.record_usage, plan.tenant_id, plan.run_id, plan.agent_name,
                                    usage_values(usage))
            ctx.metrics.record_usage(usage)
        return verdict.score

    async def _update(self, result_id: str, **changes: object) -> None:
        store = self._ctx.store
        await self._ctx.offload.write(store.write_with, q.update_result, result_id, changes)

"""/api/agents/:name/eval-runs and eval-results: start, poll, compare and human-score runs.

``POST`` pins the version under test when the run is created: ``versionNumber``'s system
prompt, else the active version's (its number is recorded on the run), else CLAUDE.md.
The run then proceeds in the background (``ashd/evals/runner.py``); ``GET …/eval-runs/:id``
shows its status and counts while it does.
"""

from __future__ import annotations

import json
from typing import Any

from ashd.errors import BadRequest, NotFound, Unavailable
from ashd.evals.compare import compare
from ashd.evals.runner import RunPlan
from ashd.http.eval_cases import EvalCaseBase, object_id, parse_tags
from ashd.http.health import COORDINATOR_ID
from ashd.http.versions import MAX_VERSION_NUMBER
from ashd.store import eval_queries as q
from ashd.store.eval_queries import EvalCaseRow, EvalResultRow, EvalRunRow

RUN_FIELDS = {"versionNumber", "categories", "tags"}
MAX_NOTES_CHARS = 10_000
MAX_LIST = 100


def run_json(row: EvalRunRow, counts: dict[str, int]) -> dict[str, Any]:
    filters = json.loads(row.filters)
    done = sum(counts[s] for s in q.DONE_RESULTS)
    return {"id": row.id, "agentName": row.agent_name, "versionNumber": row.version_number, "status": row.status,
            "categories": filters.get("categories", []), "tags": filters.get("tags", []),
            "totalCases": row.total_cases, "completedCases": done, "passed": counts["passed"],
            "failed": counts["failed"], "errors": counts["error"], "running": counts["running"],
            "pending": counts["pending"], "passRate": counts["passed"] / done if done else None,
            "error": row.error, "createdAt": row.created_at, "completedAt": row.completed_at}


def result_json(row: EvalResultRow) -> dict[str, Any]:
    return {"id": row.id, "runId": row.run_id, "caseId": row.case_id, "caseName": row.case_name,
            "sessionId": row.session_id, "status": row.status, "output": row.output, "score": row.score,
            "reason": row.reason, "humanScore": row.human_score, "humanNotes": row.human_notes,
            "durationMs": row.duration_ms, "createdAt": row.created_at, "completedAt": row.completed_at}


def parse_run(body: dict[str, Any]) -> tuple[int | None, list[str], list[str]]:
    unknown = sorted(set(body) - RUN_FIELDS)
    if unknown:
        raise BadRequest(f"unknown eval run field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(RUN_FIELDS))}")
    number = body.get("versionNumber")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                               or not 1 <= number <= MAX_VERSION_NUMBER):
        raise BadRequest("versionNumber must be a version number (1, 2, ...)")
    categories = body.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise BadRequest("categories must be a list of strings")
    return number, list(categories), parse_tags(body.get("tags") or [])


def selected(cases: list[EvalCaseRow], categories: list[str], tags: list[str]) -> list[EvalCaseRow]:
    """Cases in any of ``categories`` (all if none) having any of ``tags`` (all if none)."""
    return [c for c in cases if (not categories or c.category in categories)
            and (not tags or set(json.loads(c.tags)) & set(tags))]


def parse_human(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    score = body.get("humanScore")
    if "humanScore" in body or "resultId" in allowed:
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise BadRequest("humanScore must be an integer from 1 to 5")
        out["human_score"] = score
    notes = body.get("humanNotes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES_CHARS):
        raise BadRequest(f"humanNotes must be a string of at most {MAX_NOTES_CHARS} characters")
    if "humanNotes" in body:
        out["human_notes"] = notes
    if not out:
        raise BadRequest("nothing to change: give humanScore and/or humanNotes")
    return out


def ash_comparison(run_a: dict[str, Any], run_b: dict[str, Any], a: list[EvalResultRow], b: list[EvalResultRow],
                   questions: dict[str, str]) -> dict[str, Any]:
    """Ash's compare reply: ``{runA, runB, results: [{caseId, question, resultA, resultB}]}``
    (a deleted case's question is its name, as its results keep it)."""
    by_a, by_b = {r.case_id: r for r in a}, {r.case_id: r for r in b}
    pairs = []
    for case_id in dict.fromkeys([*by_a, *by_b]):
        ra, rb = by_a.get(case_id), by_b.get(case_id)
        question = questions.get(case_id) or (ra or rb).case_name  # type: ignore[union-attr]
        pairs.append({"caseId": case_id, "question": question, "resultA": result_json(ra) if ra else None,
                      "resultB": result_json(rb) if rb else None})
    return {"runA": run_a, "runB": run_b, "results": pairs}


class EvalRunBase(EvalCaseBase):
    async def run(self, name: str, run_id: str) -> EvalRunRow:
        run_id = object_id(run_id, "eval run id")
        await self.require_agent(name)
        row = await self.ctx.offload.read(self.ctx.store.read_with, q.get_run, self.tenant, name, run_id)
        if row is None:
            raise NotFound(f"Eval run {run_id} of agent {name} not found")
        return row

    async def run_json(self, row: EvalRunRow) -> dict[str, Any]:
        counts = await self.ctx.offload.read(self.ctx.store.read_with, q.counts, row.id)
        return run_json(row, counts)

    async def results(self, row: EvalRunRow) -> list[EvalResultRow]:
        return await self.ctx.offload.read(self.ctx.store.read_with, q.list_results, self.tenant, row.id)

    async def pinned(self, name: str, number: int | None) -> tuple[int | None, str | None]:
        """(version number, its system prompt) under test; (None, None): CLAUDE.md."""
        read, store = self.ctx.offload.read, self.ctx.store
        if number is not None:
            version = await read(store.get_agent_version, self.tenant, name, number)
            if version is None:
                raise BadRequest(f"versionNumber: agent {name} has no version {number}")
            return number, version.system_prompt
        active = [v for v in await read(store.list_agent_versions, self.tenant, name) if v.is_active]
        return (active[0].version_number, active[0].system_prompt) if active else (None, None)


class EvalRunsHandler(EvalRunBase):
    async def get(self, name: str) -> None:
        await self.require_agent(name)
        rows = await self.ctx.offload.read(self.ctx.store.read_with, q.list_runs, self.tenant, name, MAX_LIST)
        self.send_json({"runs": [await self.run_json(r) for r in rows]})

    async def post(self, name: str) -> None:
        number, categories, tags = parse_run(self.json_body())
        runner = self.ctx.eval_runner
        if runner is None:
            raise Unavailable("eval runs are not available on this server")
        await self.require_agent(name)
        number, prompt = await self.pinned(name, number)
        store, tenant = self.ctx.store, self.tenant
        cases = selected(await self.ctx.offload.read(store.read_with, q.list_cases, tenant, name), categories, tags)
        if not cases:
            raise BadRequest(f"no eval case of agent {name} matches (categories {categories or 'any'}, "
                             f"tags {tags or 'any'}); add cases first")
        filters = json.dumps({"categories": categories, "tags": tags})
        row = await self.ctx.offload.write(lambda: store.write_with(q.add_run, tenant, name, number, filters,
                                                                    cases, store.now(), COORDINATOR_ID))
        results = await self.results(row)
        by_case = {r.case_id: r.id for r in results}
        runner.start(RunPlan(tenant, name, row.id, prompt, tuple(cases), tuple(by_case[c.id] for c in cases)))
        self.send_json({"run": await self.run_json(row)}, status=201)


class EvalRunCompareHandler(EvalRunBase):
    async def get(self, name: str) -> None:
        await self.require_agent(name)  # another tenant's agent: 404 whatever the query
        ids = [self.get_query_argument(k, None) for k in ("runA", "runB")]
        if ids[0] is None or ids[1] is None:
            raise BadRequest("give both runs to compare: ?runA=<baseline run id>&runB=<candidate run id>")
        a, b = await self.run(name, ids[0]), await self.run(name, ids[1])
        results_a, results_b = await self.results(a), await self.results(b)
        run_a, run_b = await self.run_json(a), await self.run_json(b)
        cases = await self.ctx.offload.read(self.ctx.store.read_with, q.list_cases, self.tenant, name)
        questions = {c.id: c.prompt for c in cases}
        self.send_json({"runA": run_a, "runB": run_b, **compare(results_a, results_b),
                        "comparison": ash_comparison(run_a, run_b, results_a, results_b, questions)})


class EvalRunHandler(EvalRunBase):
    async def get(self, name: str, run_id: str) -> None:
        self.send_json({"run": await self.run_json(await self.run(name, run_id))})


class EvalRunResultsHandler(EvalRunBase):
    async def get(self, name: str, run_id: str) -> None:
        row = await self.run(name, run_id)
        self.send_json({"results": [result_json(r) for r in await self.results(row)]})


class EvalRunScoreHandler(EvalRunBase):
    async def post(self, name: str, run_id: str) -> None:
        """``{resultId?, humanScore 1-5, humanNotes?}``: one result of the run, or all of them.
        The reply is Ash's ``{scored, results}``, with ``result`` too for one."""
        body = self.json_body()
        changes = parse_human(body, {"resultId", "humanScore", "humanNotes"})
        row = await self.run(name, run_id)
        write, store = self.ctx.offload.write, self.ctx.store
        if body.get("resultId") is None:
            scored = await write(store.write_with, q.score_run, row.id, changes["human_score"],
                                 changes.get("human_notes"))
            self.send_json({"scored": scored, "results": [result_json(r) for r in await self.results(row)]})
            return
        result_id = object_id(str(body["resultId"]), "resultId")
        found = [r for r in await self.results(row) if r.id == result_id]
        if not found:
            raise NotFound(f"Eval result {result_id} is not a result of run {row.id}")
        await write(store.write_with, q.update_result, result_id, changes)
        updated = result_json(await self.ctx.offload.read(store.read_with, q.get_result, self.tenant, name,
                                                          result_id) or found[0])
        self.send_json({"result": updated, "scored": 1, "results": [updated]})  # result: ashd's; the rest: Ash's


class EvalResultHandler(EvalRunBase):
    async def patch(self, name: str, result_id: str) -> None:
        """``{humanScore?, humanNotes?}``."""
        changes = parse_human(self.json_body(), {"humanScore", "humanNotes"})
        result_id = object_id(result_id, "eval result id")
        await self.require_agent(name)
        read, store = self.ctx.offload.read, self.ctx.store
        if await read(store.read_with, q.get_result, self.tenant, name, result_id) is None:
            raise NotFound(f"Eval result {result_id} of agent {name} not found")
        await self.ctx.offload.write(store.write_with, q.update_result, result_id, changes)
        row = await read(store.read_with, q.get_result, self.tenant, name, result_id)
        if row is None:
            raise NotFound(f"Eval result {result_id} of agent {name} not found")
        self.send_json({"result": result_json(row)})

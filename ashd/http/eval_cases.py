"""/api/agents/:name/eval-cases: the cases an agent is evaluated on (Ash's eval routes).

A case is ``{name, prompt, scorer, expected, category, tags}``; ``scorer`` is one of
``ashd.evals.scorers.SCORERS`` (default ``contains``, Ash's substring match) and ``expected``
its argument. Import takes ``{cases: [...]}`` in the same form export gives back.

Ash's own form is taken too (its clients send it): ``{question, expectedTopics?,
expectedNotTopics?, referenceAnswer?, isActive?, chatHistory?}`` is a case whose prompt is
the question, scored by the ``topics`` scorer (Ash's topic and safety scores); every case
is shown with those fields as well.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ashd.errors import BadRequest, NotFound
from ashd.evals.scorers import check_expected
from ashd.http.agents import AgentNameHandler
from ashd.options import MAX_PROMPT_CHARS
from ashd.store import eval_queries as q
from ashd.store.eval_queries import EvalCaseRow

MAX_NAME_CHARS = 255
MAX_TAGS = 50
MAX_TAG_CHARS = 100
MAX_IMPORT = 1000
FIELDS = ("name", "prompt", "scorer", "expected", "category", "tags")
# Ash's case fields -> the topics scorer's argument (question is the prompt).
ASH_TOPICS = {"expectedTopics": "topics", "expectedNotTopics": "notTopics", "referenceAnswer": "referenceAnswer"}
ASH_FIELDS = ("question", *ASH_TOPICS, "isActive", "chatHistory")


def object_id(raw: str, what: str) -> str:
    """A path id: a UUID (its canonical form), else 400."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadRequest(f"{what} must be a UUID, got {raw[:40]!r}") from None


def case_json(row: EvalCaseRow) -> dict[str, Any]:
    portable = portable_json(row)
    topics = portable["expected"] if row.scorer == "topics" else {}
    return {"id": row.id, "agentName": row.agent_name, **portable, "createdAt": row.created_at,
            "updatedAt": row.updated_at, "question": row.prompt,
            **{ash: topics.get(key) for ash, key in ASH_TOPICS.items()}, "isActive": True, "chatHistory": None}


def portable_json(row: EvalCaseRow) -> dict[str, Any]:
    """The case as import takes it (no ids, no timestamps)."""
    return {"name": row.name, "prompt": row.prompt, "scorer": row.scorer, "expected": json.loads(row.expected),
            "category": row.category, "tags": json.loads(row.tags)}


def _string(body: dict[str, Any], key: str, limit: int, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise BadRequest(f"{where}{key} must be a non-empty string of at most {limit} characters")
    return value


def parse_tags(raw: object, where: str = "") -> list[str]:
    if not isinstance(raw, list) or len(raw) > MAX_TAGS or not all(
            isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in raw):
        raise BadRequest(f"{where}tags must be a list of at most {MAX_TAGS} non-empty strings "
                         f"(each at most {MAX_TAG_CHARS} characters)")
    return list(dict.fromkeys(raw))


def parse_case(body: object, current: EvalCaseRow | None = None, where: str = "") -> dict[str, Any]:
    """The columns a POST (``current`` None) or PATCH body sets. Raises BadRequest naming the field."""
    if not isinstance(body, dict):
        raise BadRequest(f"{where.rstrip('.') or 'the body'} must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS) - set(ASH_FIELDS))
    if unknown:
        raise BadRequest(f"{where}unknown eval case field(s): {', '.join(unknown)}; allowed: {', '.join(FIELDS)} "
                         f"(or Ash's {', '.join(ASH_FIELDS)})")
    if set(body) & set(ASH_FIELDS):
        body = from_ash(body, current, where)
    out: dict[str, Any] = {}
    if current is None or "prompt" in body:
        out["prompt"] = _string(body, "prompt", MAX_PROMPT_CHARS, where)
    if "name" in body:
        out["name"] = _string(body, "name", MAX_NAME_CHARS, where)
    elif current is None:
        out["name"] = out["prompt"].strip()[:60]
    if current is None or "scorer" in body or "expected" in body:
        scorer = body.get("scorer", current.scorer if current else "contains")
        if "expected" not in body and current is None:
            raise BadRequest(f"{where}expected is required (the {scorer} scorer's argument)")
        expected = body["expected"] if "expected" in body else json.loads(current.expected)  # type: ignore[union-attr]
        try:
            scorer, expected = check_expected(scorer, expected)
        except BadRequest as exc:
            raise BadRequest(where + exc.message) from None
        out["scorer"], out["expected"] = scorer, json.dumps(expected)
    if "category" in body and body["category"] is not None:
        out["category"] = _string(body, "category", MAX_NAME_CHARS, where)
    elif "category" in body or current is None:
        out["category"] = None
    if "tags" in body or current is None:
        out["tags"] = json.dumps(parse_tags(body.get("tags", []), where))
    return out


def from_ash(body: dict[str, Any], current: EvalCaseRow | None, where: str) -> dict[str, Any]:
    """Ash's case fields in ashd's form (``question`` -> prompt, the topic lists -> the topics
    scorer). Raises BadRequest for a mix of the two forms or what ashd does not do."""
    mixed = sorted(set(body) & {"prompt", "scorer", "expected"})
    if mixed and ("question" in body or set(body) & set(ASH_TOPICS)):
        raise BadRequest(f"{where}give either Ash's question/expectedTopics or ashd's prompt/scorer/expected, "
                         f"not both ({', '.join(mixed)} with Ash's fields)")
    if body.get("isActive") is False:
        raise BadRequest(f"{where}isActive false: ashd has no inactive cases; delete the case, or tag it and "
                         "run the other tags")
    if body.get("chatHistory"):
        raise BadRequest(f"{where}chatHistory is not supported: each case runs as one turn of a fresh session; "
                         "put the context in the question")
    out = {k: v for k, v in body.items() if k not in ASH_FIELDS}
    if "question" in body:
        out["prompt"] = body["question"]
    if set(body) & set(ASH_TOPICS) or (current is None and "question" in body):
        kept = json.loads(current.expected) if current is not None and current.scorer == "topics" else {}
        out["scorer"] = "topics"
        out["expected"] = {key: body[ash] if ash in body else kept.get(key) for ash, key in ASH_TOPICS.items()}
    return out


class EvalCaseBase(AgentNameHandler):
    async def require_agent(self, name: str) -> None:
        if await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name) is None:
            raise NotFound(f"Agent {name} not found")

    async def case(self, name: str, case_id: str) -> EvalCaseRow:
        case_id = object_id(case_id, "eval case id")
        await self.require_agent(name)
        row = await self.ctx.offload.read(self.ctx.store.read_with, q.get_case, self.tenant, name, case_id)
        if row is None:
            raise NotFound(f"Eval case {case_id} of agent {name} not found")
        return row


class EvalCasesHandler(EvalCaseBase):
    async def get(self, name: str) -> None:
        await self.require_agent(name)
        rows = await self.ctx.offload.read(self.ctx.store.read_with, q.list_cases, self.tenant, name)
        self.send_json({"cases": [case_json(r) for r in rows]})

    async def post(self, name: str) -> None:
        values = parse_case(self.json_body())
        await self.require_agent(name)
        store = self.ctx.store
        row = await self.ctx.offload.write(lambda: store.write_with(q.add_case, self.tenant, name, values,
                                                                    store.now()))
        self.send_json({"case": case_json(row)}, status=201)


class EvalCaseImportHandler(EvalCaseBase):
    async def post(self, name: str) -> None:
        cases = self.json_body().get("cases")
        if not isinstance(cases, list) or not 1 <= len(cases) <= MAX_IMPORT:
            raise BadRequest(f"cases must be a list of 1 to {MAX_IMPORT} eval cases")
        parsed = [parse_case(c, where=f"cases[{i}].") for i, c in enumerate(cases)]
        await self.require_agent(name)
        store, tenant = self.ctx.store, self.tenant

        rows = await self.ctx.offload.write(lambda: store.write_with(q.add_cases, tenant, name, parsed,
                                                                     store.now()))
        self.send_json({"imported": len(rows), "cases": [case_json(r) for r in rows]}, status=201)


class EvalCaseExportHandler(EvalCaseBase):
    async def get(self, name: str) -> None:
        await self.require_agent(name)
        rows = await self.ctx.offload.read(self.ctx.store.read_with, q.list_cases, self.tenant, name)
        self.send_json({"agentName": name, "cases": [portable_json(r) for r in rows]})


class EvalCaseHandler(EvalCaseBase):
    async def get(self, name: str, case_id: str) -> None:
        self.send_json({"case": case_json(await self.case(name, case_id))})

    async def patch(self, name: str, case_id: str) -> None:
        body = self.json_body()
        current = await self.case(name, case_id)
        changes = parse_case(body, current)
        store = self.ctx.store
        row = await self.ctx.offload.write(lambda: store.write_with(q.update_case, self.tenant, name, current.id,
                                                                    changes, store.now()))
        if row is None:  # deleted meanwhile
            raise NotFound(f"Eval case {case_id} of agent {name} not found")
        self.send_json({"case": case_json(row)})

    async def delete(self, name: str, case_id: str) -> None:
        row = await self.case(name, case_id)
        await self.ctx.offload.write(self.ctx.store.write_with, q.delete_case, self.tenant, name, row.id)
        self.set_status(204)
        self.finish()

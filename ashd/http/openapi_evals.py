"""The OpenAPI paths and schemas of the eval routes (``eval_cases.py``, ``eval_runs.py``)."""

from __future__ import annotations

from typing import Any

from ashd.evals.compare import ORDER
from ashd.evals.scorers import SCORERS
from ashd.http.openapi import NAME, _envelope, _json, _list, _op, _param
from ashd.http.openapi_schemas import NULLABLE_STRING, SCHEMAS, STRING, TIMESTAMP, UUID, Schema, ref
from ashd.options import MAX_PROMPT_CHARS
from ashd.store.eval_queries import RESULT_STATUSES, RUN_STATUSES

_NULL_NUMBER: Schema = {"type": ["number", "null"]}
_NULL_INT: Schema = {"type": ["integer", "null"]}
_TAGS: Schema = {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}
_EXPECTED: Schema = {"description": "the scorer's argument: the text (exact, contains), the pattern (regex), "
                                    "the rubric (rubric), or a JSON Schema object (json-schema)"}
_PORTABLE: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
    "scorer": {"enum": list(SCORERS), "default": "contains"},
    "expected": _EXPECTED,
    "category": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
    "tags": _TAGS,
}
_TOPIC_LIST: Schema = {"type": ["array", "null"], "maxItems": 100,
                       "items": {"type": "string", "minLength": 1, "maxLength": 1000}}
_ASH: dict[str, Schema] = {  # Ash's form of a case: scored by the topics scorer
    "question": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS,
                 "description": "Ash's name for the prompt"},
    "expectedTopics": _TOPIC_LIST, "expectedNotTopics": _TOPIC_LIST,
    "referenceAnswer": {"type": ["string", "null"], "maxLength": 20_000},
    "isActive": {"type": "boolean", "description": "true only (ashd has no inactive cases)"},
    "chatHistory": {"type": ["array", "null"], "maxItems": 0, "description": "empty only (not supported)"},
}
_HUMAN: dict[str, Schema] = {"humanScore": {"type": "integer", "minimum": 1, "maximum": 5},
                             "humanNotes": {"type": ["string", "null"], "maxLength": 10_000}}


def _obj(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {"type": "object", "properties": properties, "required": required}


SCHEMAS.update({
    "EvalCase": _obj({"id": UUID, "agentName": STRING, **_PORTABLE, "category": NULLABLE_STRING,
                      "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP, **_ASH},
                     ["id", "agentName", "name", "prompt", "scorer", "expected", "category", "tags", "question"]),
    "NewEvalCase": {**_obj({**_PORTABLE, **_ASH}, []), "additionalProperties": False,
                    "anyOf": [{"required": ["prompt", "expected"]}, {"required": ["question"]}]},
    "PortableEvalCase": {**_obj(_PORTABLE, ["prompt", "expected"]), "additionalProperties": False},
    "PatchEvalCase": {**_obj({**_PORTABLE, **_ASH}, []), "additionalProperties": False},
    "EvalRun": _obj({
        "id": UUID, "agentName": STRING, "versionNumber": _NULL_INT, "status": {"enum": list(RUN_STATUSES)},
        "categories": {"type": "array", "items": STRING}, "tags": {"type": "array", "items": STRING},
        "totalCases": {"type": "integer"}, "completedCases": {"type": "integer"}, "passed": {"type": "integer"},
        "failed": {"type": "integer"}, "errors": {"type": "integer"}, "running": {"type": "integer"},
        "pending": {"type": "integer"}, "passRate": _NULL_NUMBER, "error": NULLABLE_STRING,
        "createdAt": TIMESTAMP, "completedAt": NULLABLE_STRING,
    }, ["id", "status", "totalCases", "completedCases", "passed", "failed", "errors"]),
    "EvalResult": _obj({
        "id": UUID, "runId": UUID, "caseId": UUID, "caseName": STRING, "sessionId": NULLABLE_STRING,
        "status": {"enum": list(RESULT_STATUSES)}, "output": NULLABLE_STRING, "score": _NULL_NUMBER,
        "reason": NULLABLE_STRING, "humanScore": _NULL_INT, "humanNotes": NULLABLE_STRING,
        "durationMs": _NULL_INT, "createdAt": TIMESTAMP, "completedAt": NULLABLE_STRING,
    }, ["id", "runId", "caseId", "status"]),
    "StartEvalRun": {**_obj({"versionNumber": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                             "categories": {"type": "array", "items": STRING}, "tags": _TAGS}, []),
                     "additionalProperties": False},
})

_SIDE: Schema = {"type": ["object", "null"], "properties": {
    "resultId": UUID, "status": {"enum": list(RESULT_STATUSES)}, "score": _NULL_NUMBER,
    "reason": NULLABLE_STRING, "output": NULLABLE_STRING, "humanScore": _NULL_INT}}
_COMPARE: Schema = _obj({
    "runA": ref("EvalRun"), "runB": ref("EvalRun"),
    "cases": {"type": "array", "items": _obj({"caseId": UUID, "caseName": STRING, "change": {"enum": list(ORDER)},
                                              "a": _SIDE, "b": _SIDE}, ["caseId", "change", "a", "b"])},
    "summary": {"type": "object", "additionalProperties": {"type": "integer"}},
    "comparison": {**_obj({"runA": ref("EvalRun"), "runB": ref("EvalRun"), "results": {"type": "array", "items": _obj({
        "caseId": UUID, "question": STRING, "resultA": {"oneOf": [ref("EvalResult"), {"type": "null"}]},
        "resultB": {"oneOf": [ref("EvalResult"), {"type": "null"}]}}, ["caseId", "question", "resultA", "resultB"])}},
        ["runA", "runB", "results"]), "description": "the same in Ash's shape"},
}, ["runA", "runB", "cases", "summary", "comparison"])


def eval_paths() -> dict[str, Any]:
    t = "evals"
    case_id = _param("id", "path", UUID, "eval case id (not a UUID: 400)")
    run_id = _param("id", "path", UUID, "eval run id (not a UUID: 400)")
    result_id = _param("id", "path", UUID, "eval result id (not a UUID: 400)")
    case = _envelope("case", ref("EvalCase"))
    run = _envelope("run", ref("EvalRun"))
    result = _envelope("result", ref("EvalResult"))
    write = (404, 413, 503)
    return {
        "/api/agents/{name}/eval-cases": {
            "parameters": [NAME],
            "get": _op("List the agent's eval cases", t, _list("cases", "EvalCase"), (400, 404, 503)),
            "post": _op("Add an eval case", t, _envelope("case", ref("EvalCase"), 201), write,
                        body=ref("NewEvalCase")),
        },
        "/api/agents/{name}/eval-cases/import": {"parameters": [NAME], "post": _op(
            "Add many eval cases at once (all or none), in export's form", t,
            (201, _json(_obj({"imported": {"type": "integer"}, "cases": {"type": "array", "items": ref("EvalCase")}},
                             ["imported", "cases"]))), write,
            body=_obj({"cases": {"type": "array", "minItems": 1, "maxItems": 1000, "items": ref("NewEvalCase")}},
                      ["cases"]))},
        "/api/agents/{name}/eval-cases/export": {"parameters": [NAME], "get": _op(
            "The agent's eval cases in import's form", t,
            (200, _json(_obj({"agentName": STRING, "cases": {"type": "array", "items": ref("PortableEvalCase")}},
                             ["agentName", "cases"]))), (400, 404, 503))},
        "/api/agents/{name}/eval-cases/{id}": {
            "parameters": [NAME, case_id],
            "get": _op("Get an eval case", t, case, (400, 404, 503)),
            "patch": _op("Change an eval case", t, case, write, body=ref("PatchEvalCase")),
            "delete": _op("Delete an eval case (past results keep its name)", t, (204, {}), (400, 404, 503)),
        },
        "/api/agents/{name}/eval-runs": {
            "parameters": [NAME],
            "get": _op("List the agent's eval runs, newest first", t, _list("runs", "EvalRun"), (400, 404, 503)),
            "post": _op("Start a run of the matching cases against a pinned version (default: the active "
                        "one); it proceeds in the background", t, _envelope("run", ref("EvalRun"), 201),
                        write, body=ref("StartEvalRun")),
        },
        "/api/agents/{name}/eval-runs/compare": {"parameters": [NAME], "get": _op(
            "Two runs case by case, regressions first", t, (200, _json(_COMPARE)), (400, 404, 503),
            [_param("runA", "query", UUID, "the baseline run"), _param("runB", "query", UUID, "the candidate run")])},
        "/api/agents/{name}/eval-runs/{id}": {"parameters": [NAME, run_id], "get": _op(
            "A run with its progress counts (poll it)", t, run, (400, 404, 503))},
        "/api/agents/{name}/eval-runs/{id}/results": {"parameters": [NAME, run_id], "get": _op(
            "A run's results, by case name", t, _list("results", "EvalResult"), (400, 404, 503))},
        "/api/agents/{name}/eval-runs/{id}/score": {"parameters": [NAME, run_id], "post": _op(
            "A human score (1-5) for one result of the run (resultId) or for all of them", t,
            (200, _json(_obj({"scored": {"type": "integer"}, "results": {"type": "array", "items": ref("EvalResult")},
                              "result": ref("EvalResult")}, ["scored", "results"]))), write,
            body={**_obj({"resultId": UUID, **_HUMAN}, ["humanScore"]), "additionalProperties": False})},
        "/api/agents/{name}/eval-results/{id}": {"parameters": [NAME, result_id], "patch": _op(
            "Change a result's human score or notes", t, result, write,
            body={**_obj(_HUMAN, []), "additionalProperties": False})},
    }

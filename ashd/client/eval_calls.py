"""The eval routes as :class:`~ashd.client.calls.Call` values (Ash's client method names), and
:class:`EvalMethods`, which gives :class:`~ashd.client.AshdClient` one method per call.

Pure code: building a Call sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ashd.client.calls import JSON, Call, Shape, seg


def _path(agent: str, rest: str) -> str:
    return f"/api/agents/{seg(agent)}/{rest}"


def list_eval_cases(agent: str) -> Call:
    return Call("GET", _path(agent, "eval-cases"), key="cases", shape="list")


def create_eval_case(agent: str, case: Mapping[str, Any]) -> Call:
    """``case``: prompt, expected, and optionally name, scorer, category, tags."""
    return Call("POST", _path(agent, "eval-cases"), dict(case), key="case", shape="object")


def eval_case(agent: str, case_id: str, method: str = "GET", patch: Mapping[str, Any] | None = None) -> Call:
    """GET, PATCH (with ``patch``) or DELETE one case."""
    shape: Shape = "none" if method == "DELETE" else "object"
    return Call(method, _path(agent, f"eval-cases/{seg(case_id)}"), None if patch is None else dict(patch),
                key="case", shape=shape)


def import_eval_cases(agent: str, cases: Sequence[Mapping[str, Any]]) -> Call:
    return Call("POST", _path(agent, "eval-cases/import"), {"cases": [dict(c) for c in cases]})


def export_eval_cases(agent: str) -> Call:
    return Call("GET", _path(agent, "eval-cases/export"))


def start_eval_run(agent: str, version_number: int | None = None, categories: Sequence[str] | None = None,
                   tags: Sequence[str] | None = None) -> Call:
    body: JSON = {"versionNumber": version_number, "categories": list(categories or []) or None,
                  "tags": list(tags or []) or None}
    return Call("POST", _path(agent, "eval-runs"), {k: v for k, v in body.items() if v is not None},
                key="run", shape="object")


def list_eval_runs(agent: str) -> Call:
    return Call("GET", _path(agent, "eval-runs"), key="runs", shape="list")


def get_eval_run(agent: str, run_id: str) -> Call:
    return Call("GET", _path(agent, f"eval-runs/{seg(run_id)}"), key="run", shape="object")


def get_eval_run_results(agent: str, run_id: str) -> Call:
    return Call("GET", _path(agent, f"eval-runs/{seg(run_id)}/results"), key="results", shape="list")


def compare_eval_runs(agent: str, run_a: str, run_b: str) -> Call:
    return Call("GET", _path(agent, "eval-runs/compare"), query={"runA": run_a, "runB": run_b})


def score_eval_run(agent: str, run_id: str, human_score: int, human_notes: str | None = None,
                   result_id: str | None = None) -> Call:
    body: JSON = {"humanScore": human_score}
    if human_notes is not None:
        body["humanNotes"] = human_notes
    if result_id is not None:
        body["resultId"] = result_id
    return Call("POST", _path(agent, f"eval-runs/{seg(run_id)}/score"), body)


def score_eval_result(agent: str, result_id: str, human_score: int | None = None,
                      human_notes: str | None = None) -> Call:
    body = {k: v for k, v in (("humanScore", human_score), ("humanNotes", human_notes)) if v is not None}
    return Call("PATCH", _path(agent, f"eval-results/{seg(result_id)}"), body, key="result", shape="object")


class EvalMethods:
    """Ash's eval client methods over :meth:`call` (blocking, like the rest of the client)."""

    def call(self, call: Call) -> Any:
        raise NotImplementedError

    def list_eval_cases(self, agent: str) -> list[JSON]:
        return self.call(list_eval_cases(agent))

    def create_eval_case(self, agent: str, prompt: str, expected: Any, **fields: Any) -> JSON:
        """``fields``: name, scorer, category, tags."""
        return self.call(create_eval_case(agent, {"prompt": prompt, "expected": expected, **fields}))

    def get_eval_case(self, agent: str, case_id: str) -> JSON:
        return self.call(eval_case(agent, case_id))

    def update_eval_case(self, agent: str, case_id: str, **fields: Any) -> JSON:
        return self.call(eval_case(agent, case_id, "PATCH", fields))

    def delete_eval_case(self, agent: str, case_id: str) -> None:
        self.call(eval_case(agent, case_id, "DELETE"))

    def import_eval_cases(self, agent: str, cases: Sequence[Mapping[str, Any]]) -> JSON:
        return self.call(import_eval_cases(agent, cases))

    def export_eval_cases(self, agent: str) -> JSON:
        return self.call(export_eval_cases(agent))

    def start_eval_run(self, agent: str, version_number: int | None = None,
                       categories: Sequence[str] | None = None, tags: Sequence[str] | None = None) -> JSON:
        return self.call(start_eval_run(agent, version_number, categories, tags))

    def list_eval_runs(self, agent: str) -> list[JSON]:
        return self.call(list_eval_runs(agent))

    def get_eval_run(self, agent: str, run_id: str) -> JSON:
        return self.call(get_eval_run(agent, run_id))

    def get_eval_run_results(self, agent: str, run_id: str) -> list[JSON]:
        return self.call(get_eval_run_results(agent, run_id))

    def compare_eval_runs(self, agent: str, run_a: str, run_b: str) -> JSON:
        return self.call(compare_eval_runs(agent, run_a, run_b))

    def score_eval_run(self, agent: str, run_id: str, human_score: int, human_notes: str | None = None,
                       result_id: str | None = None) -> JSON:
        return self.call(score_eval_run(agent, run_id, human_score, human_notes, result_id))

    def score_eval_result(self, agent: str, result_id: str, human_score: int | None = None,
                          human_notes: str | None = None) -> JSON:
        return self.call(score_eval_result(agent, result_id, human_score, human_notes))

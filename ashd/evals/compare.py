"""Two runs side by side, case by case, regressions first (pure, any thread).

Run A is the baseline, run B the candidate. Cases are matched by case id. A case is a
``regression`` when it passed in A and did not pass in B, an ``improvement`` the other
way round, ``added``/``removed`` when only B/A ran it, else ``unchanged``.
"""

from __future__ import annotations

from typing import Any

from ashd.store.eval_queries import EvalResultRow

ORDER = ("regression", "improvement", "added", "removed", "unchanged")


def _side(row: EvalResultRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"resultId": row.id, "status": row.status, "score": row.score, "reason": row.reason,
            "output": row.output, "humanScore": row.human_score}


def change(a: EvalResultRow | None, b: EvalResultRow | None) -> str:
    if a is None:
        return "added"
    if b is None:
        return "removed"
    was, now = a.status == "passed", b.status == "passed"
    if was and not now:
        return "regression"
    if now and not was:
        return "improvement"
    return "unchanged"


def compare(a: list[EvalResultRow], b: list[EvalResultRow]) -> dict[str, Any]:
    """``{cases: [...], summary: {regressions, improvements, added, removed, unchanged}}``."""
    by_a = {r.case_id: r for r in a}
    by_b = {r.case_id: r for r in b}
    rows = []
    for case_id in dict.fromkeys([*by_a, *by_b]):
        ra, rb = by_a.get(case_id), by_b.get(case_id)
        name = (rb or ra).case_name  # type: ignore[union-attr]
        rows.append({"caseId": case_id, "caseName": name, "change": change(ra, rb), "a": _side(ra), "b": _side(rb)})
    rows.sort(key=lambda r: (ORDER.index(r["change"]), r["caseName"], r["caseId"]))
    summary = {f"{kind}s" if kind not in ("added", "removed", "unchanged") else kind:
               sum(1 for r in rows if r["change"] == kind) for kind in ORDER}
    return {"cases": rows, "summary": summary}

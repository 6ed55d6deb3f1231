"""Ash's form of an eval case (what its clients send) in ashd's (pure)."""

from __future__ import annotations

import json

import pytest

from ashd.errors import BadRequest
from ashd.http.eval_cases import case_json, parse_case
from ashd.store.eval_queries import EvalCaseRow


def _row(values: dict[str, object]) -> EvalCaseRow:
    return EvalCaseRow(id="c1", tenant_id="t", agent_name="a", name=str(values.get("name", "n")),
                       prompt=str(values["prompt"]), scorer=str(values["scorer"]), expected=str(values["expected"]),
                       category=None, tags="[]", created_at="t0", updated_at="t0")


def test_a_question_with_topics_is_a_topics_case_shown_in_both_forms() -> None:
    values = parse_case({"question": "Capital of France?", "expectedTopics": ["Paris"],
                         "expectedNotTopics": ["Lyon"], "referenceAnswer": "Paris.", "isActive": True,
                         "chatHistory": [], "category": "geo"})
    assert values["prompt"] == "Capital of France?" and values["scorer"] == "topics"
    assert json.loads(values["expected"]) == {"topics": ["Paris"], "notTopics": ["Lyon"], "referenceAnswer": "Paris."}
    shown = case_json(_row(values))
    assert (shown["question"], shown["expectedTopics"], shown["expectedNotTopics"], shown["referenceAnswer"],
            shown["isActive"]) == ("Capital of France?", ["Paris"], ["Lyon"], "Paris.", True)
    assert shown["prompt"] == "Capital of France?" and shown["scorer"] == "topics"


def test_a_question_alone_is_a_case_and_a_patch_keeps_the_other_topics() -> None:
    values = parse_case({"question": "Hi?"})
    assert json.loads(values["expected"]) == {"topics": [], "notTopics": [], "referenceAnswer": None}
    current = _row(parse_case({"question": "Q", "expectedTopics": ["a"], "expectedNotTopics": ["b"]}))
    patched = parse_case({"expectedTopics": ["c"]}, current)
    assert json.loads(patched["expected"])["topics"] == ["c"] and json.loads(patched["expected"])["notTopics"] == ["b"]
    assert parse_case({"question": "Q2"}, current) == {"prompt": "Q2"}
    ashd_case = case_json(_row({"prompt": "p", "scorer": "contains", "expected": '"x"'}))
    assert ashd_case["question"] == "p" and ashd_case["expectedTopics"] is None


@pytest.mark.parametrize(("body", "says"), [
    ({"question": "q", "expected": "x"}, "give either Ash's question/expectedTopics or ashd's"),
    ({"question": "q", "isActive": False}, "isActive false: ashd has no inactive cases"),
    ({"question": "q", "chatHistory": [{"role": "user", "content": "hi"}]}, "chatHistory is not supported"),
    ({"question": "q", "expectedTopics": "Paris"}, "expected.topics must be a list"),
    ({"question": "", "expectedTopics": ["a"]}, "prompt must be a non-empty string"),
])
def test_what_ashd_cannot_take_from_ashs_form_is_a_400_that_says_so(body: dict[str, object], says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_case(body)

"""Scorers: does an answer meet a case's expectation? (pure, any thread)

A case names its scorer and gives its argument (``expected``):

* ``exact``: the answer, stripped, equals the text;
* ``contains``: the text occurs in the answer, case-insensitively (Ash's only scorer);
* ``regex``: the pattern (Python syntax) matches somewhere in the answer;
* ``json-schema``: the answer is a JSON document valid against the schema (an object);
* ``rubric``: a grader model judges the answer against the rubric text (``grader.py``);
* ``topics``: Ash's own scoring, ``{topics, notTopics, referenceAnswer?}``: the share of
  ``topics`` found in the answer (case-insensitively) times the share of ``notTopics`` absent;
  it passes when every topic is found and no forbidden one (``referenceAnswer`` is kept for
  people, not scored, as in Ash).

:func:`check_expected` validates a case's argument when it is stored (400 naming the field),
so scoring itself never fails on a bad case.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from ashd.errors import BadRequest

SCORERS = ("exact", "contains", "regex", "json-schema", "rubric", "topics")
TOPIC_LISTS = ("topics", "notTopics")
MAX_TOPICS = 100
MAX_EXPECTED_CHARS = 20_000


@dataclass(frozen=True)
class Score:
    passed: bool
    score: float  # 0.0 .. 1.0
    reason: str


def check_expected(scorer: object, expected: object) -> tuple[str, Any]:
    """Validate a case's (scorer, expected); returns them. Raises BadRequest naming the field."""
    if scorer not in SCORERS:
        raise BadRequest(f"scorer must be one of {', '.join(SCORERS)}")
    assert isinstance(scorer, str)
    if scorer == "json-schema":
        if not isinstance(expected, dict):
            raise BadRequest("expected must be a JSON Schema object for the json-schema scorer")
        try:
            jsonschema.Draft202012Validator.check_schema(expected)
        except jsonschema.SchemaError as exc:
            raise BadRequest(f"expected is not a valid JSON Schema: {exc.message}") from None
        if len(json.dumps(expected)) > MAX_EXPECTED_CHARS:
            raise BadRequest(f"expected is longer than {MAX_EXPECTED_CHARS} characters")
        return scorer, expected
    if scorer == "topics":
        return scorer, _check_topics(expected)
    if not isinstance(expected, str) or not expected.strip():
        raise BadRequest(f"expected must be a non-empty string for the {scorer} scorer")
    if len(expected) > MAX_EXPECTED_CHARS:
        raise BadRequest(f"expected is longer than {MAX_EXPECTED_CHARS} characters")
    if scorer == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            raise BadRequest(f"expected is not a valid regular expression: {exc}") from None
    return scorer, expected


def _check_topics(expected: object) -> dict[str, Any]:
    if not isinstance(expected, dict) or set(expected) - {*TOPIC_LISTS, "referenceAnswer"}:
        raise BadRequest("expected must be {topics?, notTopics?, referenceAnswer?} for the topics scorer")
    out: dict[str, Any] = {}
    for key in TOPIC_LISTS:
        items = expected.get(key) or []
        if not isinstance(items, list) or len(items) > MAX_TOPICS or not all(
                isinstance(t, str) and t.strip() and len(t) <= 1000 for t in items):
            raise BadRequest(f"expected.{key} must be a list of at most {MAX_TOPICS} non-empty strings")
        out[key] = list(items)
    reference = expected.get("referenceAnswer")
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_EXPECTED_CHARS):
        raise BadRequest(f"expected.referenceAnswer must be a string of at most {MAX_EXPECTED_CHARS} characters")
    out["referenceAnswer"] = reference
    return out


def _topics(expected: dict[str, Any], answer: str) -> Score:
    text = answer.casefold()
    missing = [t for t in expected["topics"] if t.casefold() not in text]
    present = [t for t in expected["notTopics"] if t.casefold() in text]
    topic = 1 - len(missing) / len(expected["topics"]) if expected["topics"] else 1.0
    safety = 1 - len(present) / len(expected["notTopics"]) if expected["notTopics"] else 1.0
    why = [f"missing topic(s) {', '.join(map(repr, missing))}"] if missing else []
    why += [f"forbidden topic(s) {', '.join(map(repr, present))} present"] if present else []
    return Score(not why, topic * safety, "; ".join(why) or "every topic found, no forbidden one")


def score_locally(scorer: str, expected: Any, answer: str) -> Score:
    """Score with a local scorer (every one but ``rubric``)."""
    if scorer == "exact":
        ok = answer.strip() == str(expected).strip()
        return Score(ok, float(ok), "the answer equals the expected text" if ok else "the answer differs")
    if scorer == "contains":
        ok = str(expected).casefold() in answer.casefold()
        return Score(ok, float(ok), f"{'found' if ok else 'did not find'} {str(expected)!r} in the answer")
    if scorer == "regex":
        ok = re.search(str(expected), answer) is not None
        return Score(ok, float(ok), f"the pattern {'matched' if ok else 'did not match'}")
    if scorer == "json-schema":
        return _json_schema(expected, answer)
    if scorer == "topics":
        return _topics(expected, answer)
    raise ValueError(f"{scorer} is not a local scorer")


def _json_schema(schema: dict[str, Any], answer: str) -> Score:
    try:
        document = json.loads(_strip_fence(answer))
    except ValueError:
        return Score(False, 0.0, "the answer is not a JSON document")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Score(False, 0.0, f"the answer does not match the schema at {where}: {error.message}")
    return Score(True, 1.0, "the answer matches the schema")


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ```json fence; the document is what is inside."""
    found = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, re.DOTALL)
    return found.group(1) if found else text

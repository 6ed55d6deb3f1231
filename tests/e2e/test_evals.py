"""Evals through a real ashd, the real CLI in bwrap and the scripted model: cases, runs in
fresh sessions, every scorer (the rubric through the metered grader), pinned versions,
compare, human scores, a daemon killed mid-run, and ``ashctl eval``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT, REPO
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

AGENT = "hello"
BASE = f"/api/agents/{AGENT}"
CASES: list[dict[str, Any]] = [
    {"name": "greets", "prompt": "[[say: Hello there, friend]]", "expected": "HELLO"},
    {"name": "exact", "prompt": "[[say: 42]]", "scorer": "exact", "expected": "42"},
    {"name": "regex-miss", "prompt": "[[say: the answer is 41]]", "scorer": "regex", "expected": r"\b42\b"},
    {"name": "json", "prompt": '[[say: {"city": "Paris"}]]', "scorer": "json-schema",
     "expected": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}},
    # The scripted grader answers from the rubric's directive; the agent's answer cannot steer it.
    {"name": "rubric", "prompt": "[[say: Bonjour! [[say: FAIL]]]]", "scorer": "rubric",
     "expected": "The answer greets the user. [[say: PASS it greets the user]]"},
    {"name": "pinned", "prompt": "[[echo-system]]", "expected": "MARKER-ONE", "category": "version",
     "tags": ["prompt"]},
]


def wait_run(c: httpx.Client, run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = c.get(f"{BASE}/eval-runs/{run_id}").json()["run"]
        if run["status"] != "running":
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still running after {timeout}s: {run}")


def results_by_name(c: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    return {r["caseName"]: r for r in c.get(f"{BASE}/eval-runs/{run_id}/results").json()["results"]}


def setup_agent(c: httpx.Client) -> None:
    c.post("/api/agents", json={"name": AGENT, "path": str(HELLO_AGENT)}).raise_for_status()
    for marker in ("MARKER-ONE", "MARKER-TWO"):
        made = c.post(f"{BASE}/versions", json={"systemPrompt": f"You are the agent {marker}."})
        assert made.status_code == 201, made.text
    c.post(f"{BASE}/versions/2/activate").raise_for_status()


def test_runs_score_every_case_pin_the_version_and_compare(
        database_url: str | None, start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(database_url, ASH_EVAL_CONCURRENCY="3")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        setup_agent(c)
        made = c.post(f"{BASE}/eval-cases/import", json={"cases": CASES})
        assert made.status_code == 201 and made.json()["imported"] == len(CASES), made.text
        assert c.get(f"{BASE}/eval-cases/export").json()["cases"][0]["expected"] == "HELLO"

        pinned = c.post(f"{BASE}/eval-runs", json={"versionNumber": 1})
        assert pinned.status_code == 201, pinned.text
        first = pinned.json()["run"]
        assert (first["versionNumber"], first["totalCases"]) == (1, len(CASES))
        run1 = wait_run(c, first["id"])
        active = c.post(f"{BASE}/eval-runs", json={}).json()["run"]
        assert active["versionNumber"] == 2  # the active version, recorded on the run
        run2 = wait_run(c, active["id"])

        assert run1["status"] == "completed" and run1["error"] is None, run1
        assert (run1["completedCases"], run1["passed"], run1["failed"], run1["errors"]) == (6, 5, 1, 0), run1
        r1 = results_by_name(c, run1["id"])
        assert {n: r["status"] for n, r in r1.items()} == {
            "greets": "passed", "exact": "passed", "regex-miss": "failed", "json": "passed", "rubric": "passed",
            "pinned": "passed"}
        assert r1["rubric"]["reason"] == "it greets the user" and r1["rubric"]["score"] == 1.0
        assert "MARKER-ONE" in r1["pinned"]["output"] and "MARKER-TWO" not in r1["pinned"]["output"]
        assert r1["regex-miss"]["score"] == 0.0 and r1["regex-miss"]["output"] == "the answer is 41"
        r2 = results_by_name(c, run2["id"])
        assert r2["pinned"]["status"] == "failed" and "MARKER-TWO" in r2["pinned"]["output"]
        assert (run2["passed"], run2["failed"]) == (4, 2)

        # Each case ran in a fresh session, ended afterwards.
        sessions = {r["sessionId"] for r in [*r1.values(), *r2.values()]}
        assert len(sessions) == 12 and None not in sessions
        for sid in list(sessions)[:3]:
            assert c.get(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"

        # The rubric grader's calls are metered and attributed to their run.
        usage = c.get("/api/usage/stats", params={"sessionId": run1["id"]}).json()["stats"]
        assert usage["totalMessages"] == 1 and usage["totalInputTokens"] > 0, usage

        compared = c.get(f"{BASE}/eval-runs/compare", params={"runA": run1["id"], "runB": run2["id"]}).json()
        assert compared["cases"][0]["caseName"] == "pinned" and compared["cases"][0]["change"] == "regression"
        assert compared["summary"]["regressions"] == 1 and compared["summary"]["unchanged"] == 5

        one = r1["greets"]["id"]
        scored = c.post(f"{BASE}/eval-runs/{run1['id']}/score",
                        json={"resultId": one, "humanScore": 4, "humanNotes": "warm"})
        assert scored.status_code == 200 and scored.json()["result"]["humanScore"] == 4, scored.text
        patched = c.patch(f"{BASE}/eval-results/{one}", json={"humanScore": 5})
        assert patched.json()["result"]["humanScore"] == 5 and patched.json()["result"]["humanNotes"] == "warm"
        c.post(f"{BASE}/eval-runs/{run2['id']}/score", json={"humanScore": 2}).raise_for_status()
        assert {r["humanScore"] for r in results_by_name(c, run2["id"]).values()} == {2}
        assert results_by_name(c, run1["id"])["exact"]["humanScore"] is None

        listed = [r["id"] for r in c.get(f"{BASE}/eval-runs").json()["runs"]]
        assert listed == [run2["id"], run1["id"]]
        only = c.post(f"{BASE}/eval-runs", json={"categories": ["version"], "tags": ["prompt"]}).json()["run"]
        assert only["totalCases"] == 1
        wait_run(c, only["id"])

        for method, path, body, text in [
            ("POST", f"{BASE}/eval-runs/{run1['id']}/score", {"humanScore": 6}, "humanScore must be"),
            ("POST", f"{BASE}/eval-runs", {"versionNumber": 99}, "has no version 99"),
            ("POST", f"{BASE}/eval-runs", {"tags": ["nothing-has-this"]}, "no eval case"),
            ("POST", f"{BASE}/eval-cases", {"prompt": "p", "scorer": "bogus", "expected": "x"}, "scorer must be"),
            ("POST", f"{BASE}/eval-cases", {"prompt": "p", "scorer": "regex", "expected": "("}, "regular expr"),
            ("POST", f"{BASE}/eval-cases", {"prompt": "p"}, "expected is required"),
            ("POST", f"{BASE}/eval-cases/import", {"cases": [CASES[0], {"prompt": 5}]}, "cases[1].prompt"),
            ("GET", f"{BASE}/eval-runs/not-a-run", None, "must be a UUID"),
            ("GET", f"{BASE}/eval-runs/compare", None, "runA"),
        ]:
            resp = c.request(method, path, json=body)
            assert resp.status_code == 400 and text in resp.json()["error"], (path, body, resp.text)
        assert len(c.get(f"{BASE}/eval-cases").json()["cases"]) == len(CASES)  # the bad import added none
        missing = c.get(f"{BASE}/eval-runs/00000000-0000-4000-8000-000000000000")
        assert missing.status_code == 404


def test_ashs_own_case_form_and_reply_shapes(database_url: str | None,
                                            start_ashd: Callable[..., AshdProcess]) -> None:
    """What Ash's clients send and read: ``{question, expectedTopics, expectedNotTopics}``
    cases scored by Ash's topic and safety scores, ``comparison`` and ``scored`` replies."""
    daemon = start_ashd(database_url)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": AGENT, "path": str(HELLO_AGENT)}).raise_for_status()
        made = c.post(f"{BASE}/eval-cases", json={"question": "[[say: Paris is in France]]",
                                                  "expectedTopics": ["paris", "France"], "referenceAnswer": "Paris",
                                                  "category": "geo", "tags": ["ash"], "isActive": True})
        assert made.status_code == 201, made.text
        case = made.json()["case"]
        assert (case["question"], case["expectedTopics"], case["referenceAnswer"], case["isActive"]) == (
            "[[say: Paris is in France]]", ["paris", "France"], "Paris", True)
        imported = c.post(f"{BASE}/eval-cases/import", json={"cases": [
            {"question": "[[say: Lyon, I think]]", "expectedTopics": ["Paris"], "expectedNotTopics": ["Lyon"]}]})
        assert imported.status_code == 201 and imported.json()["imported"] == 1, imported.text
        run = wait_run(c, c.post(f"{BASE}/eval-runs", json={"tags": []}).json()["run"]["id"])
        assert (run["passed"], run["failed"], run["errors"]) == (1, 1, 0), run
        results = c.get(f"{BASE}/eval-runs/{run['id']}/results").json()["results"]
        missed = next(r for r in results if r["status"] == "failed")
        assert missed["score"] == 0.0 and "missing topic(s) 'Paris'" in missed["reason"], missed
        assert "forbidden topic(s) 'Lyon' present" in missed["reason"]
        again = wait_run(c, c.post(f"{BASE}/eval-runs", json={}).json()["run"]["id"])
        comparison = c.get(f"{BASE}/eval-runs/compare", params={"runA": run["id"], "runB": again["id"]}).json()[
            "comparison"]
        assert (comparison["runA"]["id"], comparison["runB"]["id"]) == (run["id"], again["id"])
        pair = next(p for p in comparison["results"] if p["caseId"] == case["id"])
        assert pair["question"] == case["question"]
        assert pair["resultA"]["status"] == pair["resultB"]["status"] == "passed"
        one = c.post(f"{BASE}/eval-runs/{run['id']}/score", json={"resultId": missed["id"], "humanScore": 2}).json()
        assert one["scored"] == 1 and one["results"][0]["humanScore"] == 2 and one["result"]["id"] == missed["id"]
        every = c.post(f"{BASE}/eval-runs/{again['id']}/score", json={"humanScore": 3, "humanNotes": "ok"}).json()
        assert every["scored"] == 2 and {r["humanNotes"] for r in every["results"]} == {"ok"}


def _start_sleeping_run(c: httpx.Client) -> str:
    """Three cases that each sleep two minutes, at most two at a time (ASH_EVAL_CONCURRENCY)."""
    run = c.post(f"{BASE}/eval-runs", json={}).json()["run"]
    deadline = time.monotonic() + 180
    while (now := c.get(f"{BASE}/eval-runs/{run['id']}").json()["run"])["running"] != 2:
        assert time.monotonic() < deadline, f"two cases never ran at once: {now}"
        time.sleep(0.2)
    assert (now["pending"], now["completedCases"]) == (1, 0), now  # the third waits for a slot
    return str(run["id"])


def _interrupted(daemon: AshdProcess, run_id: str, reason: str) -> None:
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        after = c.get(f"{BASE}/eval-runs/{run_id}").json()["run"]
        assert (after["status"], after["error"]) == ("interrupted", reason), after
        results = c.get(f"{BASE}/eval-runs/{run_id}/results").json()["results"]
        assert [(r["status"], r["reason"]) for r in results] == [("error", reason)] * 3


def test_cases_run_in_parallel_up_to_the_limit_and_a_cut_off_run_is_interrupted(
        start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_EVAL_CONCURRENCY="2")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": AGENT, "path": str(HELLO_AGENT)}).raise_for_status()
        for n in range(3):
            c.post(f"{BASE}/eval-cases", json={"prompt": f"[[sleep: 120000]] [[say: late {n}]]",
                                               "expected": "late"}).raise_for_status()
        crashed = _start_sleeping_run(c)
    daemon.stop(signal.SIGKILL)
    again = daemon.restarted()
    try:
        _interrupted(again, crashed, "ashd restarted while the run was in progress")
        with httpx.Client(base_url=again.url, headers=again.headers, timeout=60) as c:
            stopped = _start_sleeping_run(c)
        assert again.stop() == 0
        third = again.restarted()
        try:
            _interrupted(third, stopped, "ashd stopped while the run was in progress")
        finally:
            third.stop()
    finally:
        again.stop()


def ashctl(daemon: AshdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASH_SERVER_URL": daemon.url, "ASH_API_KEY": daemon.key}
    return subprocess.run([sys.executable, "-m", "ashd.cli.ashctl", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def test_ashctl_eval_end_to_end(start_ashd: Callable[..., AshdProcess], tmp_path: Path) -> None:
    d = start_ashd(None)
    ok(ashctl(d, "deploy", str(HELLO_AGENT), "--name", AGENT))
    first = ok(ashctl(d, "eval", "add", AGENT, "[[say: Hello]]", "--expect", "hello", "--name", "greets")).strip()
    ok(ashctl(d, "eval", "add", AGENT, "[[say: 7]]", "--scorer", "exact", "--expect", "7", "--tag", "math"))
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps({"cases": [{"name": "miss", "prompt": "[[say: no]]", "expected": "yes"}]}))
    assert "imported 1 case(s)" in ok(ashctl(d, "eval", "import", AGENT, str(cases_file)))
    listed = json.loads(ok(ashctl(d, "eval", "cases", AGENT, "--json")))["cases"]
    assert listed[0]["name"] == "greets" and len(listed) == 3 and listed[0]["id"] == first
    exported = json.loads(ok(ashctl(d, "eval", "export", AGENT)))
    assert {c["name"] for c in exported["cases"]} == {"greets", "[[say: 7]]", "miss"}

    ran = ashctl(d, "eval", "run", AGENT, "--interval", "0.3")
    assert ran.returncode == 1, (ran.stdout, ran.stderr)  # one case fails: not all passed
    assert "3/3 done: 2 passed, 1 failed, 0 errors" in ran.stderr  # plain lines: stderr is no TTY
    assert "\r" not in ran.stderr
    assert "miss" in ran.stdout and "run completed" in ran.stdout
    only = ashctl(d, "eval", "run", AGENT, "--tag", "math", "--json", "--interval", "0.3")
    assert only.returncode == 0, only.stderr
    doc = json.loads(only.stdout)
    assert doc["run"]["status"] == "completed" and [r["status"] for r in doc["results"]] == ["passed"]

    runs = json.loads(ok(ashctl(d, "eval", "runs", AGENT, "--json")))["runs"]
    newest, oldest = runs[0]["id"], runs[1]["id"]
    assert newest == doc["run"]["id"]
    assert "passed" in ok(ashctl(d, "eval", "results", AGENT, oldest))
    compared = ok(ashctl(d, "eval", "compare", AGENT, oldest, newest))
    assert compared.splitlines()[1].split()[0] == "removed"  # no regression: removed cases come first
    assert "scored 3 result(s) 3/5" in ok(ashctl(d, "eval", "score", AGENT, oldest, "3", "--notes", "ok"))
    results = json.loads(ok(ashctl(d, "eval", "results", AGENT, oldest, "--json")))["results"]
    assert {(r["humanScore"], r["humanNotes"]) for r in results} == {(3, "ok")}
    ok(ashctl(d, "eval", "delete", AGENT, first))
    assert ashctl(d, "eval", "delete", AGENT, first).returncode == 1  # gone: 404
    bad = ashctl(d, "eval", "add", AGENT, "p", "--scorer", "json-schema", "--expect", "{nope")
    assert bad.returncode == 2 and "not JSON" in bad.stderr

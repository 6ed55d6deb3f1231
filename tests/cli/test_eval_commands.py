"""``ashctl eval run`` against the fake ashd: a progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from ashd.cli.ashctl import run
from ashd.client import discovery

RUN = {"id": "r1", "status": "running", "versionNumber": 2, "totalCases": 4, "completedCases": 0, "passed": 0,
       "failed": 0, "errors": 0}
DONE = {**RUN, "status": "completed", "completedCases": 4, "passed": 3, "failed": 1}
RESULTS = [{"caseName": "greets", "status": "passed", "score": 1.0, "reason": "found"},
           {"caseName": "math", "status": "failed", "score": 0.0, "reason": "differs"}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_system_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "SYSTEM_DATA_DIR", tmp_path / "no-system-dir")


def _serve(fake: Any) -> None:
    fake.json("POST", "/api/agents/bot/eval-runs", {"run": RUN}, status=201)
    fake.json("GET", "/api/agents/bot/eval-runs/r1", {"run": DONE})
    fake.json("GET", "/api/agents/bot/eval-runs/r1/results", {"results": RESULTS})


def _run(fake: Any, err: io.StringIO, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(["--server", fake.url, "--api-key", "k", "eval", "run", "bot", "--interval", "0", *extra], out, err, {})
    return code, out.getvalue()


def test_a_terminal_gets_a_progress_bar_and_a_failed_case_exits_1(fake_ashd: Any) -> None:
    _serve(fake_ashd)
    err = Terminal()
    code, out = _run(fake_ashd, err, "--version", "2", "--tag", "fast")
    assert code == 1
    assert fake_ashd.requests[0].body == {"versionNumber": 2, "tags": ["fast"]}
    assert f"\r[{'.' * 30}] 0/4 done" in err.getvalue()
    assert f"\r[{'#' * 30}] 4/4 done: 3 passed, 1 failed, 0 errors" in err.getvalue()
    assert "math" in out and "run completed: 4/4 done" in out


def test_a_pipe_gets_plain_lines_and_json_only_the_final_document(fake_ashd: Any) -> None:
    _serve(fake_ashd)
    err = io.StringIO()
    code, _ = _run(fake_ashd, err)
    assert code == 1 and "\r" not in err.getvalue()
    assert "0/4 done: 0 passed, 0 failed, 0 errors\n4/4 done: 3 passed, 1 failed, 0 errors\n" in err.getvalue()
    quiet = io.StringIO()
    code, out = _run(fake_ashd, quiet, "--json")
    assert json.loads(out) == {"run": DONE, "results": RESULTS} and quiet.getvalue() == ""

"""Property-based fuzzing of a running ashd against its own OpenAPI document (schemathesis).

Every operation of ``/openapi.json`` gets up to ``EXAMPLES`` generated requests, half
schema-valid and half schema-violating (schemathesis' positive and negative modes: wrong
types, missing fields, bad ids, no or a bad key), authenticated with the daemon's key unless
the case drops it. Each response must not be a 5xx and must match the documented schema of
its status code. The run fails unless at least ``MIN_REQUESTS`` requests were sent in total.

It runs against ashd on SQLite and on Postgres. Keeping it fast (a few minutes each on 2
cores): a real sandbox start costs ~2 s, so generated
requests never name the deployed agent where that would start sandboxes in bulk: ``POST
/api/sessions`` (its agent name is generated, so it mostly answers 404 or 400; the few names
that match an agent this run uploaded do start real sessions) and ``PATCH
/api/agents/{name}/config`` (``preWarmCount`` would start up to 10). ``POST
/api/sessions/{id}/messages`` gets generated session ids only, so it answers JSON errors
before any stream (and turn) starts; ``exec`` too (generated shell commands would spend the
run in sleeps and timeouts); the ``DELETE`` routes too, so the objects below survive
the run. Every other operation with a path parameter, ``GET .../stream`` included (it replays
and ends: no turn is running, and ``follow`` is turned off for the real session), sends
about one request in ``REAL_SHARE`` with the real agent (``examples/hello-agent``) or the
one real session created up front, so the handlers behind a found object are fuzzed as well.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi import from_dict

from ashd.http.openapi import openapi_document
from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

EXAMPLES = 80
MIN_REQUESTS = 1000
REAL_SHARE = 6  # one request in REAL_SHARE names the real agent or session
GENERATED_IDS_ONLY = {
    ("POST", "/api/sessions/{id}/messages"),
    ("DELETE", "/api/sessions/{id}"),
    ("DELETE", "/api/agents/{name}"),
    ("PATCH", "/api/agents/{name}/config"),
    ("PATCH", "/api/agents/{name}"),  # config.preWarmCount, like PATCH .../config
    ("POST", "/api/agents/{name}/eval-runs"),  # would run every fuzzed case in a sandbox of its own
}
CHECKS = [not_a_server_error, response_schema_conformance]


def deploy_and_start(daemon: AshdProcess) -> dict[str, str]:
    """Deploy examples/hello-agent and create one session: the real path parameters."""
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
        agent = c.post("/api/agents", json={"name": "hello-agent", "path": str(HELLO_AGENT)})
        assert agent.status_code == 201, agent.text
        session = c.post("/api/sessions", json={"agent": "hello-agent"})
        assert session.status_code == 201, session.text
    return {"name": "hello-agent", "id": session.json()["session"]["id"]}


def _replay_only(case: Case) -> Case:
    """``?follow=true`` on the real session's stream would stay open until the session ends
    (heartbeats keep the read timeout from firing): fuzz it with the stream ending."""
    if case.path.endswith("/stream") and isinstance(case.query, dict) and "follow" in case.query:
        case.query = {**case.query, "follow": "false"}
    return case


class Fuzzer:
    def __init__(self, daemon: AshdProcess) -> None:
        self.daemon = daemon
        self.http = requests.Session()
        self.requests = 0
        self.failures: list[str] = []

    def strategy(self, operation: Any, real: dict[str, str]) -> st.SearchStrategy[Case]:
        generated: st.SearchStrategy[Case] = st.one_of(
            operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        params = {p: real[p] for p in ("name", "id") if "{" + p + "}" in operation.path}
        if not params or (operation.method.upper(), operation.path) in GENERATED_IDS_ONLY:
            return generated
        found: st.SearchStrategy[Case] = operation.as_strategy(path_parameters=params).map(_replay_only)
        return st.integers(1, REAL_SHARE).flatmap(lambda n: found if n == 1 else generated)

    def send(self, case: Case) -> None:
        self.requests += 1
        response = case.call(base_url=self.daemon.url, session=self.http, headers=self.daemon.headers,
                             timeout=60)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:  # one Failure, or several
            self.failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
                                 f" -> {response.status_code} {response.text[:300]}\n{exc}")

    def run(self, operation: Any, real: dict[str, str]) -> None:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=self.strategy(operation, real))
        def fuzz(case: Case) -> None:
            self.send(case)

        fuzz()


@pytest.mark.timeout(900)
def test_fuzzing_finds_no_server_error_and_no_schema_violation(ashd: AshdProcess) -> None:
    """On SQLite and on Postgres (the ``ashd`` fixture runs both)."""
    real = deploy_and_start(ashd)
    schema = from_dict(openapi_document())
    fuzzer = Fuzzer(ashd)
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so the other operations still find the real agent and session.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        fuzzer.run(operation, real)
    took = time.monotonic() - started
    print(f"fuzzed {len(operations)} operations with {fuzzer.requests} requests in {took:.0f}s")
    assert not fuzzer.failures, f"{len(fuzzer.failures)} failures:\n" + "\n\n".join(fuzzer.failures[:20])
    assert fuzzer.requests >= MIN_REQUESTS

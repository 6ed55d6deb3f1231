"""Ash's TypeScript client's calls (``ash_ts_calls.mjs``, run by Node's own fetch) against a
real ashd with the real CLI and the scripted model, on SQLite and Postgres: every call
passes, with the answers read the way Ash's client reads them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("ash_ts_calls.mjs")
CALLS = 39  # PASS lines the script prints when every call ran


def test_every_call_of_ashs_typescript_client_passes(ashd: AshdProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the machine image has Node.js 20 (apt-get install nodejs)", pytrace=False)
    done = subprocess.run([node, str(SCRIPT), ashd.url, ashd.key, str(HELLO_AGENT)], capture_output=True,
                          text=True, timeout=280, check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[-1] == f"{CALLS} passed, 0 failed", done.stdout + done.stderr
    assert sum(line.startswith("PASS ") for line in lines) == CALLS

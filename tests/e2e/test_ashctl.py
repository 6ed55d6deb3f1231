"""The README's walkthrough with ashctl against a running ashd (key found in the data dir)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def ashctl(daemon: AshdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "ASH_SERVER_URL": daemon.url, "ASH_DATA_DIR": str(daemon.data_dir)}
    return subprocess.run([sys.executable, "-m", "ashd.cli.ashctl", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_readme_walkthrough(ashd_sqlite: AshdProcess) -> None:
    deployed = ashctl(ashd_sqlite, "deploy", "./examples/hello-agent", "--name", "hello")
    assert deployed.returncode == 0, deployed.stderr
    assert "hello" in ashctl(ashd_sqlite, "agent", "list").stdout

    created = ashctl(ashd_sqlite, "session", "create", "hello")
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.strip()

    sent = ashctl(ashd_sqlite, "session", "send", session_id, "[[say: hi from ashctl]]")
    assert sent.returncode == 0, sent.stderr
    assert "hi from ashctl" in sent.stdout

    tool = ashctl(ashd_sqlite, "session", "send", session_id, "[[bash: echo tool-ran]]")
    assert tool.returncode == 0 and "Bash" in tool.stderr and "tool-ran" in tool.stdout + tool.stderr

    chat = ashctl(ashd_sqlite, "chat", "hello", "[[say: one-shot chat]]", "--end")
    assert chat.returncode == 0, chat.stderr
    assert "one-shot chat" in chat.stdout

    assert ashctl(ashd_sqlite, "session", "end", session_id).returncode == 0
    ended = ashctl(ashd_sqlite, "session", "send", session_id, "hi")
    assert ended.returncode == 1 and "ended" in ended.stderr  # a clear error, a script-friendly code
    assert ashctl(ashd_sqlite, "health").returncode == 0
    doctor = ashctl(ashd_sqlite, "doctor")
    assert doctor.returncode == 0 and "launcher: bwrap" in doctor.stdout and "met" in doctor.stdout
    assert ashctl(ashd_sqlite, "--api-key", "ash_wrong", "agent", "list").returncode == 1

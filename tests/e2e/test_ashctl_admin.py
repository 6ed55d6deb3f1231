"""Issue #4: the rest of ashctl against a running ashd: session fork/exec/files/tail/events/
interrupt/logs, workspace bundles, keys, credentials, usage, queue, config show; --json output
that scripts parse, and exit codes they can rely on."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def ashctl(daemon: AshdProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "ASH_SERVER_URL": daemon.url, "ASH_DATA_DIR": str(daemon.data_dir)}
    return subprocess.run([sys.executable, "-m", "ashd.cli.ashctl", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=180)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    return json.loads(ok(result))


def test_session_commands(ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    d = ashd_sqlite
    ok(ashctl(d, "deploy", "./examples/hello-agent", "--name", "hello"))
    sid = ok(ashctl(d, "session", "create", "hello")).strip()
    ok(ashctl(d, "session", "send", sid, "[[bash: echo made > made.txt]]"))

    # exec: runs in the sandbox, exits with the command's status, output split like a shell
    ran = ashctl(d, "session", "exec", sid, "cat made.txt; echo oops >&2; exit 3")
    assert ran.returncode == 3 and ran.stdout == "made\n" and "oops" in ran.stderr
    assert as_json(ashctl(d, "session", "exec", sid, "pwd", "--json"))["exitCode"] == 0  # type: ignore[index]

    # files: list, read, upload, delete
    listed = as_json(ashctl(d, "session", "files", sid, "--json"))
    assert "made.txt" in [f["path"] for f in listed["files"]]  # type: ignore[index]
    assert ok(ashctl(d, "session", "files", sid, "made.txt")) == "made\n"
    local = tmp_path / "notes.md"
    local.write_text("# notes\n")
    ok(ashctl(d, "session", "put", sid, str(local), "--to", "docs"))
    assert ok(ashctl(d, "session", "files", sid, "docs/notes.md")) == "# notes\n"
    ok(ashctl(d, "session", "rm", sid, "docs/notes.md"))
    assert ashctl(d, "session", "files", sid, "docs/notes.md").returncode == 1  # gone: a 404, exit 1

    # workspace bundle out, changed, back in
    bundle = tmp_path / "ws.tar.gz"
    ok(ashctl(d, "session", "download", sid, "-o", str(bundle)))
    with tarfile.open(bundle) as tar:
        assert any(name.endswith("made.txt") for name in tar.getnames())
    fresh = tmp_path / "fresh.tar.gz"
    with tarfile.open(fresh, "w:gz") as tar:
        data = b"from a bundle\n"
        info = tarfile.TarInfo("bundled.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ok(ashctl(d, "session", "upload", sid, str(fresh)))
    assert ok(ashctl(d, "session", "exec", sid, "cat bundled.txt")) == "from a bundle\n"

    # the stream and the timeline
    tail = ok(ashctl(d, "session", "tail", sid, "--json", "--until-done")).splitlines()
    assert json.loads(tail[-1])["event"] == "done"
    events = as_json(ashctl(d, "session", "events", sid, "--json", "--type", "tool_start"))
    assert events["events"]  # type: ignore[index]
    assert "logs" in as_json(ashctl(d, "session", "logs", sid, "--json"))  # type: ignore[operator]
    busy = ashctl(d, "session", "interrupt", sid)
    assert busy.returncode == 1 and "no turn" in busy.stderr.lower()  # nothing running: a clear 409

    child = ok(ashctl(d, "session", "fork", sid)).strip()
    assert child != sid
    assert as_json(ashctl(d, "session", "info", child, "--json"))["session"]["status"] == "paused"  # type: ignore[index]
    ok(ashctl(d, "session", "end", child))
    ok(ashctl(d, "session", "end", sid))


def test_admin_commands(start_ashd: Callable[..., AshdProcess]) -> None:
    d = start_ashd(None, ASH_CREDENTIAL_KEY="test-credential-key-0123456789abcdef")
    # keys: a read-only key can read and is refused writes with 403 (exit 1)
    created = as_json(ashctl(d, "keys", "create", "--label", "ci", "--scope", "read", "--json"))
    key = created["key"]  # type: ignore[index]
    assert key.startswith("ash_")
    listed = as_json(ashctl(d, "keys", "list", "--json"))["keys"]  # type: ignore[index]
    assert created["id"] in [k["id"] for k in listed]  # type: ignore[index]
    assert all("key" not in k and "keyHash" not in k for k in listed)
    assert ok(ashctl(d, "--api-key", key, "agent", "list")) is not None
    refused = ashctl(d, "--api-key", key, "deploy", "./examples/hello-agent")
    assert refused.returncode == 1 and "scope" in refused.stderr
    ok(ashctl(d, "keys", "delete", created["id"]))  # type: ignore[index]
    assert ashctl(d, "--api-key", key, "agent", "list").returncode == 1

    # credentials: the key is read from stdin, never echoed back
    added = ashctl(d, "credentials", "add", "anthropic", "--label", "team", "--json", stdin="sk-ant-secret\n")
    credential = as_json(added)["credential"]  # type: ignore[index]
    assert credential["type"] == "anthropic" and "sk-ant-secret" not in added.stdout
    listed_creds = ok(ashctl(d, "credentials", "list", "--json"))
    assert credential["id"] in listed_creds and "sk-ant-secret" not in listed_creds
    ok(ashctl(d, "credentials", "delete", credential["id"]))
    assert credential["id"] not in ok(ashctl(d, "credentials", "list", "--json"))

    # usage and queue
    stats = as_json(ashctl(d, "usage", "--json"))["stats"]  # type: ignore[index]
    assert "totalInputTokens" in stats
    ok(ashctl(d, "deploy", "./examples/hello-agent", "--name", "hello"))
    item = as_json(ashctl(d, "queue", "add", "hello", "[[say: queued]]", "--priority", "5", "--json"))["item"]  # type: ignore[index]
    assert item["priority"] == 5
    assert item["id"] in ok(ashctl(d, "queue", "list"))
    assert "pending" in as_json(ashctl(d, "queue", "stats", "--json"))["stats"]  # type: ignore[index]
    assert ashctl(d, "queue", "info", "not-a-uuid").returncode == 1

    shown = as_json(ashctl(d, "config", "show", "--json"))
    assert shown["server"] == d.url  # type: ignore[index]
    assert d.key not in json.dumps(shown)  # masked

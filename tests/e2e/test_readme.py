"""The README's "Try it", as a new user runs it, read from README.md itself.

A copy of the checkout (its tracked files, with ``.venv`` linked in) stands for a fresh
clone. The daemon is started the way ``make run`` starts it (the recipe is read from the
Makefile), with its defaults: relative ``./data``, ashd on 4100 and the scripted model on
4199. Then every ``ashctl`` command of the README and its ``ash_sdk`` snippet run verbatim
with the copy as their working directory. The test asserts on what the user sees: exit
statuses and the reply text. Everything it started is stopped (its process group), even
when it fails. The only test allowed to use the default ports; it fails, rather than pick
others, when they are taken.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PORTS = {4100: "ashd (ASH_PORT)", 4199: "the scripted model (ASHD_SCRIPTED_PORT)"}
SERVER = "http://127.0.0.1:4100"
REPLY = "ok: hi"  # the scripted model's answer to a prompt without directives
START_TIMEOUT_S = 120.0
COMMAND_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- what the README and the Makefile say ----------------------------------------------------


def try_it_commands() -> list[list[str]]:
    """The argv of each line of the first code block under "## Try it", comments dropped."""
    section = (REPO / "README.md").read_text().split("\n## Try it\n", 1)[1]
    block = section.split("```", 2)[1]
    return [argv for line in block.splitlines()[1:] if (argv := shlex.split(line, comments=True))]


def python_snippet() -> str:
    """The README's first ```python block."""
    return (REPO / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]


def make_run_recipe() -> list[str]:
    """The argv of ``make run``'s own recipe (its prerequisites are the install steps)."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no run target with a recipe"
    lines = [line.strip().lstrip("@") for line in recipe.group(1).splitlines()]
    assert len(lines) == 1, f"make run's recipe changed; teach this test to start it: {lines}"
    return shlex.split(lines[0])


# -- a fresh clone and a user's environment ---------------------------------------------------


def fresh_clone(dest: Path) -> Path:
    """Copy the tracked files (as they are on disk) to ``dest``; link the ready virtualenv."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert sys.prefix != sys.base_prefix, "run the tests from the project's virtualenv (make test)"
    (dest / ".venv").symlink_to(sys.prefix)  # the one running this test: everything is installed
    return dest


def user_environment() -> dict[str, str]:
    """This environment minus anything that points ashd or ashctl somewhere (a new user's)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("ASH_", "ASHD_", "ANTHROPIC_", "CLAUDE"))}


def require_free_ports() -> None:
    """Fail (never pick other ports) when a README port is taken."""
    for port, owner in PORTS.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ashd and the model bind
            try:
                sock.bind(("127.0.0.1", port))
                continue
            except OSError as exc:
                problem = exc.strerror
        pytest.fail(f"port {port} on 127.0.0.1 cannot be used ({problem}); the README test needs it for "
                    f"{owner}, the README's default. Stop whatever listens there and run it again.",
                    pytrace=False)


# -- `make run`, in the foreground of its own process group ---------------------------------


class LocalRun:
    """``make run``'s recipe started in ``clone``; output in ``log``. Stops its whole group."""

    def __init__(self, clone: Path, log: Path) -> None:
        self.clone, self.log = clone, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRun:
        require_free_ports()
        self.log.write_bytes(b"")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(make_run_recipe(), cwd=self.clone, env=user_environment(),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"make run exited with {self.proc.returncode}:\n{self.output()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{SERVER}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        pytest.fail(f"ashd did not answer on {SERVER} within {START_TIMEOUT_S:.0f}s:\n{self.output()}",
                    pytrace=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            stop_group(proc)


def stop_group(leader: subprocess.Popen[Any]) -> None:
    """SIGTERM ``leader``'s process group (ashd stops gracefully); wait until it is empty,
    else SIGKILL it. The leader is our child and is reaped; the rest were its children."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _group_alive(leader):
            time.sleep(0.1)
    leader.wait(timeout=STOP_TIMEOUT_S)


def _group_alive(leader: subprocess.Popen[Any]) -> bool:
    leader.poll()  # a zombie leader still counts as a member of its group
    try:
        os.killpg(leader.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("fresh-clone"))


@pytest.fixture(scope="module")
def make_run(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun(clone, tmp_path_factory.mktemp("make-run") / "output.log")
    try:
        yield run.start()
    finally:
        run.stop()


def as_user(argv: list[str], clone: Path, run: LocalRun) -> subprocess.CompletedProcess[str]:
    """Run one README command in the clone; a failure shows its output and the daemon's."""
    done = subprocess.run(argv, cwd=clone, env=user_environment(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, (
        f"`{shlex.join(argv)}` exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}\n"
        f"make run's output:\n{run.output()}")
    return done


# -- the README, line by line -------------------------------------------------------------------


def test_try_it_runs_as_written(make_run: LocalRun, clone: Path) -> None:
    commands = try_it_commands()
    assert commands[0] == ["make", "run"], "Try it no longer starts with make run; update this test"
    assert all(argv[0] == ".venv/bin/ashctl" for argv in commands[1:]), commands
    session_id = ""
    for argv in commands[1:]:
        argv = [session_id if arg == "<id>" else arg for arg in argv]
        done = as_user(argv, clone, make_run)
        what = argv[1:3]
        if what[0] == "deploy":
            assert "deployed agent hello" in done.stdout
        elif what == ["session", "create"]:
            session_id = done.stdout.strip()
            assert UUID.fullmatch(session_id), f"session create printed {done.stdout!r}, not an id"
        else:  # session send, chat: the reply streamed to the terminal
            assert REPLY in done.stdout, f"`{shlex.join(argv)}` printed {done.stdout!r}"
    assert session_id, "Try it never created a session"


def test_the_ash_sdk_snippet_runs_as_written(make_run: LocalRun, clone: Path) -> None:
    done = as_user([".venv/bin/python", "-c", python_snippet()], clone, make_run)
    assert REPLY in done.stdout, done.stdout


def test_make_run_says_where_it_wrote_the_key_only_when_it_did(make_run: LocalRun, clone: Path) -> None:
    key_file = clone.resolve() / "data" / "initial-api-key"
    first = make_run.output()
    assert f"bootstrap API key written to {key_file}" in first
    make_run.stop()
    make_run.start()
    again = make_run.output()
    assert "bootstrap API key" not in again and "initial-api-key" not in again, again


def test_make_run_stops_with_a_clear_message_when_the_model_port_is_taken(
        clone: Path, tmp_path: Path) -> None:
    # Not the README ports: another free pair, with the model's port held by this test.
    with socket.socket() as holder, socket.socket() as probe:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        probe.bind(("127.0.0.1", 0))
        taken, ashd_port = holder.getsockname()[1], probe.getsockname()[1]
        probe.close()
        env = {**user_environment(), "ASHD_SCRIPTED_PORT": str(taken), "ASH_PORT": str(ashd_port),
               "ASH_DATA_DIR": str(tmp_path / "data")}
        proc = subprocess.Popen(make_run_recipe(), cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            output = "(still running after 60 s: ashd was started anyway)"
        finally:
            stop_group(proc)
    assert proc.returncode == 1, output
    assert f"127.0.0.1:{taken}" in output and "ASHD_SCRIPTED_PORT" in output, output

"""ashd raises its own descriptor limit at start, and never waits with select()."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ASHD = Path(__file__).resolve().parents[2] / "ashd"


def test_the_soft_limit_is_raised_to_the_hard_limit_and_logged() -> None:
    code = ("import logging, resource, sys; logging.basicConfig(stream=sys.stdout, level='INFO'); "
            "from ashd.fdlimit import raise_nofile; raise_nofile(32); "
            "print('limits', *resource.getrlimit(resource.RLIMIT_NOFILE))")
    out = subprocess.run(["prlimit", "--nofile=1024:4096", "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "limits 4096 4096" in out
    assert "raised from 1024 to 4096" in out and "room for 28 sandboxes" in out


def test_the_daemon_raises_it_before_serving() -> None:
    source = (ASHD / "cli" / "daemon.py").read_text()
    assert source.index("raise_nofile(") < source.index("Daemon(config)")


def test_nothing_in_ashd_calls_select_select() -> None:
    """select() fails for descriptors numbered 1024 and up, which a busy ashd reaches."""
    offenders = []
    for path in ASHD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "select"
                    and isinstance(node.value, ast.Name) and node.value.id == "select"):
                offenders.append(f"{path.relative_to(ASHD)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "select":
                offenders.append(f"{path.relative_to(ASHD)}:{node.lineno}")
    assert offenders == []

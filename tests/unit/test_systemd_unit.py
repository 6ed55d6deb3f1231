"""systemd/ashd.service and ashd-runner.service are valid units (systemd-analyze verify), with the
notify protocol."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Keys newer than this machine's systemd (252); older versions ignore them, as documented.
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


@pytest.mark.parametrize("name", ["ashd.service", "ashd-runner.service"])
def test_unit_verifies(tmp_path: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (package systemd)"
    ashd = Path(sys.executable).with_name("ashd")
    text = (REPO / "systemd" / name).read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Delegate=yes" in text
    unit = tmp_path / name
    unit.write_text(text.replace("/opt/ashd/.venv/bin/ashd", str(ashd)))
    run = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                         env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"}, timeout=60)
    problems = [line for line in (run.stdout + run.stderr).splitlines()
                if line.strip() and not any(key in line for key in NEWER_KEYS)]
    assert problems == [], problems

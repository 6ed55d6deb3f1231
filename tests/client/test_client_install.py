"""`pip install ashd` (no extras) gives a working client and ashctl, and nothing else.

The wheel is built from this checkout and installed into a bare virtualenv with
``--no-index``: if the package declared any dependency, pip could not resolve it and
the install would fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check, timeout=300)


def test_client_installs_alone_and_the_daemon_says_what_is_missing(tmp_path: Path) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, REPO)
    _run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / "bin"
    _run(bin_dir / "pip", "install", "-q", "--no-index", *wheels.glob("ashd-*.whl"))

    installed = _run(bin_dir / "pip", "list", "--format=freeze").stdout.lower()
    assert "tornado" not in installed and "pykka" not in installed and "claude-agent-sdk" not in installed
    probe = "from ashd.client import AshdClient, AsyncAshdClient, TextDelta; print('ok')"
    assert _run(bin_dir / "python", "-c", probe).stdout.strip() == "ok"
    assert "session" in _run(bin_dir / "ashctl", "--help").stdout

    daemon = _run(bin_dir / "ashd", check=False)
    assert daemon.returncode == 1
    assert "pip install 'ashd[daemon]'" in daemon.stderr

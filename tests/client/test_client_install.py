"""`pip install ashd` (no extras) gives a working client and ashctl, and nothing else.

The wheel is built from this checkout and installed into a bare virtualenv with
``--no-index``: if the package declared any dependency, pip could not resolve it and
the install would fail.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, REPO)
    (built,) = wheels.glob("ashd-*.whl")
    return built


def test_the_wheel_ships_every_file_of_the_package(wheel: Path) -> None:
    # Directories without __init__.py (ashd/proxy, the Alembic migrations) included.
    listed = subprocess.run(["git", "ls-files", "ashd"], cwd=REPO, capture_output=True, text=True, check=True)
    tracked = {name for name in listed.stdout.split() if (REPO / name).is_file()}
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert tracked - shipped == set()
    assert not [name for name in shipped if "__pycache__" in name]


def test_client_installs_alone_and_the_daemon_says_what_is_missing(tmp_path: Path, wheel: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / "bin"
    _run(bin_dir / "pip", "install", "-q", "--no-index", wheel)

    installed = _run(bin_dir / "pip", "list", "--format=freeze").stdout.lower()
    assert "tornado" not in installed and "pykka" not in installed and "claude-agent-sdk" not in installed
    probe = "from ashd.client import AshdClient, AsyncAshdClient, TextDelta; print('ok')"
    assert _run(bin_dir / "python", "-c", probe).stdout.strip() == "ok"
    assert "session" in _run(bin_dir / "ashctl", "--help").stdout

    daemon = _run(bin_dir / "ashd", check=False)
    assert daemon.returncode == 1
    assert "pip install 'ashd[daemon]'" in daemon.stderr

    assert not [line for line in installed.split() if line.startswith("mcp==")]
    mcp = subprocess.run([bin_dir / "ashctl", "mcp"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert mcp.returncode == 2  # EXIT_USAGE
    assert "pip install 'ashd[mcp]'" in mcp.stderr and mcp.stdout == ""

"""man/*.1 are generated from the parsers (`make man`); a stale page fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("prog, source", [("ashd", "ashd/cli/daemon.py"), ("ashctl", "ashd/cli/ashctl.py")])
def test_man_page_is_current(prog: str, source: str, tmp_path: Path) -> None:
    out = tmp_path / f"{prog}.1"
    tool = Path(sys.executable).with_name("argparse-manpage")
    subprocess.run([str(tool), "--pyfile", source, "--function", "build_parser", "--prog", prog,
                    "--project-name", "ashd", "--manual-title", "ashd manual", "--output", str(out)],
                   cwd=REPO, check=True, capture_output=True)

    def body(path: Path) -> list[str]:  # the first line carries the build date
        return path.read_text().splitlines()[1:]

    assert body(out) == body(REPO / "man" / f"{prog}.1"), f"man/{prog}.1 is stale: run `make man`"

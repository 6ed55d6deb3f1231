"""The scripted model in a process of its own, as a real model API is: its serving then
shares no interpreter (no GIL) with the benchmark's clients, which parse what both paths
deliver. ``python benchmarks/model_process.py`` prints the base URL and serves until its
stdin closes; :class:`ModelProcess` starts and stops it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0


class ModelProcess:
    """``base_url`` and ``stop()``, as :class:`~ashd.scripted.server.ScriptedModel` has."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], cwd=REPO,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the scripted model process did not start (it said {line!r})")
        self.base_url = line
        self.pid = self._proc.pid

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> int:
    sys.path.insert(0, str(REPO))
    from ashd.scripted.server import ScriptedModel

    model = ScriptedModel()
    print(model.start(), flush=True)
    sys.stdin.read()  # until the benchmark closes it (or exits)
    model.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

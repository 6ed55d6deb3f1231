"""Transfer progress: the client reports bytes as they move; ashctl draws it on a terminal only."""

from __future__ import annotations

import io
import itertools
from typing import Any

from ashd.cli.context import ProgressBar
from ashd.client import AshdClient


def test_download_and_upload_report_progress(fake_ashd: Any) -> None:
    body = b"x" * 300_000
    fake_ashd.raw("GET", "/api/sessions/s1/files/big.bin", 200, body, "application/octet-stream")
    fake_ashd.json("POST", "/api/sessions/s1/files", {"files": [{"path": "a", "written": True}]})
    seen: list[tuple[int, int | None]] = []
    client = AshdClient(fake_ashd.url, progress=lambda done, total: seen.append((done, total)))

    assert client.read_file("s1", "big.bin") == body
    assert seen[-1] == (len(body), len(body)) and len(seen) >= 2  # in steps, ending complete
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen))

    seen.clear()
    client.write_files("s1", {"a": b"y" * 600_000})
    sent = int(fake_ashd.last().headers["content-length"])
    assert seen[-1] == (sent, sent) and len(seen) >= 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_stays_quiet_elsewhere() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream, "upload")
        bar(1 << 20, 2 << 20)
        bar(2 << 20, 2 << 20)
        bar.close()
    assert "upload: 1.0/2.0 MiB 50%" in tty.getvalue() and tty.getvalue().endswith("100%\n")
    assert pipe.getvalue() == ""

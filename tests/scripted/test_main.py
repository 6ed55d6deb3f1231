"""``python -m ashd.scripted``: flags, port file, script file, clean exit on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ashd.scripted.__main__ import DEFAULT_PORT, build_parser


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.script, args.port_file) == (
        "127.0.0.1",
        DEFAULT_PORT,
        None,
        None,
    )
    assert (args.input_tokens, args.output_tokens, args.log_level) == (100, 20, "WARNING")


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            [
                {"match": "deploy", "reply": "[[say: deploying now]]"},
                {"match": None, "reply": "default answer"},
            ]
        )
    )
    return path


@pytest.fixture
def server(tmp_path: Path, script_file: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port_file = tmp_path / "port"
    argv = [
        sys.executable,
        "-m",
        "ashd.scripted",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--script",
        str(script_file),
        "--input-tokens",
        "3",
        "--output-tokens",
        "4",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until the server is listening
        assert line.startswith("scripted model listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        assert url.endswith(":" + port_file.read_text().strip())
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def ask(url: str, prompt: str) -> dict[str, object]:
    body = {
        "model": "m",
        "max_tokens": 10,
        "stream": False,
        "messages": [{"role": "user", "content": prompt}],
    }
    response = httpx.post(url + "/v1/messages", json=body)
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_the_script_and_exits_cleanly(
    server: tuple[subprocess.Popen[str], str], signum: int
) -> None:
    proc, url = server
    first = ask(url, "please deploy it")
    assert first["content"] == [{"type": "text", "text": "deploying now"}]
    assert first["usage"] == {
        "input_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }
    assert ask(url, "[[say: ignored]]")["content"] == [{"type": "text", "text": "default answer"}]
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == 0


def test_bad_script_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "ashd.scripted", "--port", "0", "--script", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "bad.json" in done.stderr

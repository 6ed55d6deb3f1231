"""A real S3-compatible server (moto_server) on a loopback port, for the S3 tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY, SECRET_KEY = "ashd-test-key", "ashd-test-secret"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_moto(log: Path, host: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], str]:
    """moto_server listening on ``host`` (another test's address, e.g. a veth's): (process, URL)."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the test extra (pip install -e '.[test]')", pytrace=False)
    for _ in range(3):  # the free port can be taken between our probe and moto's bind
        port = _free_port(host)
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(exe), "-H", host, "-p", str(port)], stdout=out, stderr=out)
        url = f"http://{host}:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url + "/", timeout=1):
                    return proc, url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        proc.kill()
        proc.wait()
    pytest.fail(f"moto_server did not start; its log:\n{log.read_text(errors='replace')}", pytrace=False)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running moto_server, with boto3's credential chain pointed at test keys."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto_server.log")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_CONFIG_FILE", "/nonexistent")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"ashd-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name

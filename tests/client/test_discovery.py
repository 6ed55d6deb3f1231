"""Server URL and API key discovery: precedence and the missing-key hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashd.client.discovery import (
    DEFAULT_SERVER_URL,
    Target,
    is_loopback,
    missing_key_hint,
    resolve_target,
)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """A working directory, an ASH_DATA_DIR and a stand-in for /var/lib/ashd."""
    found = {name: tmp_path / name for name in ("cwd", "datadir", "system")}
    for path in found.values():
        path.mkdir()
    (found["cwd"] / "data").mkdir()
    return found


def key_file(folder: Path, key: str) -> None:
    (folder / "initial-api-key").write_text(key + "\n")


def resolve(dirs: dict[str, Path], env: dict[str, str], **flags: str | None) -> Target:
    return resolve_target(env=env, cwd=dirs["cwd"], system_dir=dirs["system"], **flags)


def test_url_flag_beats_env_beats_default(dirs: dict[str, Path]) -> None:
    env = {"ASH_SERVER_URL": "http://127.0.0.1:5000/"}
    assert resolve(dirs, {}).url == DEFAULT_SERVER_URL
    assert resolve(dirs, env).url == "http://127.0.0.1:5000"
    assert resolve(dirs, env, server="http://localhost:6000").url == "http://localhost:6000"


def test_key_flag_beats_env_beats_files(dirs: dict[str, Path]) -> None:
    key_file(dirs["cwd"] / "data", "from-file")
    env = {"ASH_API_KEY": "from-env"}
    flagged = resolve(dirs, env, api_key="from-flag")
    assert (flagged.api_key, flagged.key_source) == ("from-flag", "--api-key")
    from_env = resolve(dirs, env)
    assert (from_env.api_key, from_env.key_source) == ("from-env", "ASH_API_KEY")
    assert resolve(dirs, {}).api_key == "from-file"


def test_key_files_are_tried_in_order_first_readable_wins(dirs: dict[str, Path]) -> None:
    env = {"ASH_DATA_DIR": str(dirs["datadir"])}
    key_file(dirs["system"], "system-key")
    assert resolve(dirs, env).api_key == "system-key"
    key_file(dirs["cwd"] / "data", "cwd-key")
    assert resolve(dirs, env).api_key == "cwd-key"
    key_file(dirs["datadir"], "datadir-key")
    target = resolve(dirs, env)
    assert target.api_key == "datadir-key"
    assert target.key_source == str(dirs["datadir"] / "initial-api-key")


def test_empty_key_file_is_skipped(dirs: dict[str, Path]) -> None:
    key_file(dirs["cwd"] / "data", "  ")
    key_file(dirs["system"], "system-key")
    target = resolve(dirs, {})
    assert target.api_key == "system-key"
    assert [c.outcome for c in target.checked] == ["empty", "used"]


def test_relative_data_dir_is_relative_to_cwd(dirs: dict[str, Path]) -> None:
    (dirs["cwd"] / "state").mkdir()
    key_file(dirs["cwd"] / "state", "rel-key")
    assert resolve(dirs, {"ASH_DATA_DIR": "state"}).api_key == "rel-key"


def test_empty_values_count_as_unset(dirs: dict[str, Path]) -> None:
    target = resolve(dirs, {"ASH_SERVER_URL": "", "ASH_API_KEY": ""}, api_key="")
    assert (target.url, target.api_key) == (DEFAULT_SERVER_URL, None)


def test_bootstrap_file_is_not_sent_to_another_host(dirs: dict[str, Path]) -> None:
    key_file(dirs["cwd"] / "data", "local-only")
    target = resolve(dirs, {}, server="https://ash.example.com")
    assert target.api_key is None
    assert "https://ash.example.com is not on this machine" in missing_key_hint(target)


def test_hint_lists_every_place_looked_and_how_to_pass_a_key(dirs: dict[str, Path]) -> None:
    target = resolve(dirs, {"ASH_DATA_DIR": str(dirs["datadir"])})
    assert target.api_key is None
    hint = missing_key_hint(target)
    for folder in (dirs["datadir"], dirs["cwd"] / "data", dirs["system"]):
        assert f"{folder / 'initial-api-key'} (missing)" in hint
    assert "--api-key" in hint and "ASH_API_KEY" in hint


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:4100", True),
        ("http://127.8.0.1", True),
        ("http://localhost:4100", True),
        ("http://[::1]:4100", True),
        ("http://10.0.0.5:4100", False),
        ("https://ash.example.com", False),
    ],
)
def test_is_loopback(url: str, local: bool) -> None:
    assert is_loopback(url) is local

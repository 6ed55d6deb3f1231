"""Find the server URL and API key a command-line client should use.

URL: ``--server`` flag > ``ASH_SERVER_URL`` > ``http://127.0.0.1:4100``.

Key: ``--api-key`` flag > ``ASH_API_KEY`` > the bootstrap file
``initial-api-key`` that ashd writes into its data directory, looked for in
``$ASH_DATA_DIR``, then ``./data``, then ``/var/lib/ashd``; the first readable,
non-empty file wins. The bootstrap file is only used when the URL points at
this machine (loopback): the key was minted by the local daemon, and sending
it to another host would leak it.

Pure apart from reading those files; the environment and working directory
are parameters so callers and tests control them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SERVER_URL = "http://127.0.0.1:4100"
KEY_FILE_NAME = "initial-api-key"
SYSTEM_DATA_DIR = Path("/var/lib/ashd")


@dataclass(frozen=True)
class KeyFileCheck:
    """Where a key file was looked for, and why it was not used (or ``"used"``)."""

    path: Path
    outcome: str


@dataclass(frozen=True)
class Target:
    """The resolved server and credentials.

    ``key_source`` says where ``api_key`` came from (``--api-key``,
    ``ASH_API_KEY``, a file path) or is ``None`` when no key was found;
    ``checked`` lists the bootstrap files looked at, for error messages.
    """

    url: str
    api_key: str | None
    key_source: str | None
    checked: tuple[KeyFileCheck, ...] = ()
    file_skipped_reason: str | None = None


def key_file_candidates(env: Mapping[str, str], cwd: Path, system_dir: Path) -> list[Path]:
    """The bootstrap key files to try, in order."""
    dirs = [Path(env["ASH_DATA_DIR"])] if env.get("ASH_DATA_DIR") else []
    dirs += [cwd / "data", system_dir]
    return [(d if d.is_absolute() else cwd / d) / KEY_FILE_NAME for d in dirs]


def read_key_file(path: Path) -> tuple[str | None, str]:
    """Return ``(key, "used")`` or ``(None, why it was not usable)``."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, "missing"
    except PermissionError:
        return None, "not readable by this user"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({exc})"
    return (key, "used") if key else (None, "empty")


def is_loopback(url: str) -> bool:
    """True if ``url``'s host is this machine (localhost or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_target(
    server: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    system_dir: Path | None = None,
) -> Target:
    """Apply the precedence rules above; empty values count as unset.

    ``env`` defaults to :data:`os.environ`, ``cwd`` to the working directory
    and ``system_dir`` to :data:`SYSTEM_DATA_DIR`.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    system_dir = SYSTEM_DATA_DIR if system_dir is None else system_dir
    url = (server or env.get("ASH_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/")
    if api_key:
        return Target(url, api_key, "--api-key")
    if env.get("ASH_API_KEY"):
        return Target(url, env["ASH_API_KEY"], "ASH_API_KEY")
    if not is_loopback(url):
        return Target(url, None, None, (), f"{url} is not on this machine")
    checked: list[KeyFileCheck] = []
    for path in key_file_candidates(env, cwd, system_dir):
        key, outcome = read_key_file(path)
        checked.append(KeyFileCheck(path, outcome))
        if key is not None:
            return Target(url, key, str(path), tuple(checked))
    return Target(url, None, None, tuple(checked))


def missing_key_hint(target: Target) -> str:
    """Explain, for a 401 with no key, where keys were looked for and how to pass one."""
    lines = ["the server requires an API key and none was found."]
    if target.file_skipped_reason:
        lines.append(
            f"The bootstrap file {KEY_FILE_NAME} was not used: {target.file_skipped_reason}."
        )
    else:
        lines.append(f"Looked for {KEY_FILE_NAME} in:")
        lines += [f"  {check.path} ({check.outcome})" for check in target.checked]
    lines.append(
        "Pass a key with --api-key KEY, set ASH_API_KEY, or set ASH_DATA_DIR "
        "to the daemon's data directory."
    )
    return "\n".join(lines)

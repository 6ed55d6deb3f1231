"""Agent folders deployed by upload: validating and writing them (blocking I/O).

Deploy by server path is ``ashd/files/agent_path.py``.

Uploads are validated completely before anything is written, written into a fresh
directory, and swapped in whole, so a bad request changes nothing and a redeploy leaves
no stale files. Every path is relative, free of ``..``, and checked to resolve inside the
target after writing; nothing is ever written through a symlink.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ashd.errors import BadRequest, PayloadTooLarge

MAX_FILES = 500
MAX_TOTAL_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class UploadedFile:
    path: PurePosixPath
    content: bytes


def parse_files(files: object) -> list[UploadedFile]:
    """Validate ``[{path, content(base64)}]``. Raises BadRequest / PayloadTooLarge."""
    if files is None:
        return []
    if not isinstance(files, list):
        raise BadRequest("files must be a list of {path, content} objects")
    if len(files) > MAX_FILES:
        raise PayloadTooLarge(f"at most {MAX_FILES} files per deploy")
    out: list[UploadedFile] = []
    total = 0
    for i, item in enumerate(files):
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("content"), str)):
            raise BadRequest(f"files[{i}] must be an object with string 'path' and base64 'content'")
        rel = _safe_relative(item["path"], f"files[{i}].path")
        if any(f.path == rel for f in out):
            raise BadRequest(f"files[{i}].path {rel} appears twice")
        try:
            content = base64.b64decode(item["content"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"files[{i}].content is not valid base64") from None
        total += len(content)
        if total > MAX_TOTAL_BYTES:
            raise PayloadTooLarge(f"deployed files exceed {MAX_TOTAL_BYTES} bytes in total")
        out.append(UploadedFile(rel, content))
    return out


def _safe_relative(raw: str, field: str) -> PurePosixPath:
    path = PurePosixPath(raw)
    if not raw or "\x00" in raw or "\\" in raw or path.is_absolute() or ".." in path.parts or raw.endswith("/"):
        raise BadRequest(f"{field} must be a relative file path without '..': {raw!r}")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise BadRequest(f"{field} must name a file: {raw!r}")
    return PurePosixPath(*parts)


def write_agent_folder(target: Path, files: list[UploadedFile], system_prompt: str | None, name: str) -> None:
    """Replace ``target`` with exactly these files (plus CLAUDE.md if missing)."""
    names = {f.path for f in files}
    if PurePosixPath("CLAUDE.md") not in names:
        prompt = system_prompt if system_prompt else f"# {name}\n"
        files = [*files, UploadedFile(PurePosixPath("CLAUDE.md"), prompt.encode())]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.new"
    staging.mkdir(mode=0o700)
    try:
        root = staging.resolve()
        for item in files:
            dest = root.joinpath(*item.path.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.parent.resolve().is_relative_to(root):
                raise BadRequest(f"file path {item.path} escapes the agent folder")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(item.content)
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, target: Path) -> None:
    old = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)

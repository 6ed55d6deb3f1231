"""Attachment bytes on disk: ``<data>/attachments/<tenant>/<session>/<attachment id>/<name>``.

The file name a client gives is reduced to a safe basename; tenant, session and attachment
ids become single path segments (a tenant id that is not one is replaced by its hash).
Every function blocks on file I/O.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from pathlib import Path

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_NAME = 200


def safe_basename(raw: str) -> str:
    """The last path component of ``raw``, without control characters, separators or
    leading dots, at most 200 bytes; ``attachment`` if nothing is left."""
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().lstrip(".").strip()
    while len(name.encode()) > _MAX_NAME:
        name = name[:-1]
    return name or "attachment"


def _segment(value: str) -> str:
    if _SEGMENT.match(value) and value not in (".", ".."):
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def attachment_dir(data_dir: Path, tenant_id: str, session_id: str, attachment_id: str) -> Path:
    return data_dir / "attachments" / _segment(tenant_id) / _segment(session_id) / _segment(attachment_id)


def save(folder: Path, name: str, content: bytes) -> Path:
    """Write ``content`` as ``folder/name`` (a new folder, private to ashd). Returns the path."""
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.mkdir(mode=0o700)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    return path


def remove(data_dir: Path, storage_path: str) -> None:
    """Remove an attachment's folder; ignores a path outside ``<data>/attachments``."""
    folder = Path(storage_path).parent
    root = (data_dir / "attachments").resolve()
    if folder.resolve().is_relative_to(root) and folder.resolve() != root:
        shutil.rmtree(folder, ignore_errors=True)

"""Deploy by server path: who may register a folder on the server, and which (blocking I/O).

``POST /api/agents {name, path}`` makes an agent of a folder that stays where it is: ashd
references it in place (it is never copied at deploy; each new session copies it into its
own workspace). So a path is a read of the host, and the rules are:

- **The operator** (a key holding the ``deploy-path`` grant: ``ASH_API_KEY``, the bootstrap
  key, keys minted with it through ``/api/internal/api-keys``) may name any folder.
- **Other keys** only folders inside ``agents.path_roots`` (``ASH_AGENT_PATH_ROOTS``);
  without roots they get 403 pointing at deploy by upload (``files``).
- **Nobody** may name a folder inside ashd's own places: the data dir (the database, keys,
  every sandbox's workspace), ``/run`` and the sandbox mount root, a ``file://`` snapshot dir.
- The path is absolute and free of ``..``. It is opened one component at a time with
  O_NOFOLLOW from ``/`` (operator) or from the path root (others): a symlink anywhere below
  is refused, never followed, and every directory met is compared (device, inode) with the
  forbidden places, so a bind mount or hard-to-spot alias of them is refused too.
- It must hold a regular ``CLAUDE.md``.

What is stored is the folder's real path. Every later read of the folder (agent file reads,
a session's workspace copy, policy files, instructions) opens it again with
:func:`ashd.files.contained.open_dir_nofollow`, so a component swapped for a symlink after
the deploy is refused then, and a symlink inside the folder is never followed
(``ashd/files/contained.py``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ashd.config import Config, agent_path_roots
from ashd.errors import BadRequest, Forbidden, NotFound
from ashd.files.contained import DIR_FLAGS, MAX_DEPTH, UnsafePath

UPLOAD_HINT = ("deploy by upload instead: POST /api/agents {name, files: [{path, content(base64)}]} "
               "(ashctl deploy ./folder uploads)")
RUN_DIR = Path("/run")


@dataclass(frozen=True)
class PathRules:
    """Where deploy by path may look (``roots``, for non-operator keys) and never may."""

    roots: tuple[Path, ...] = ()
    forbidden: tuple[Path, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> PathRules:
        places = [config.data_dir, RUN_DIR, config.sandbox.mount_root]
        if config.snapshot.url.startswith("file://"):
            places.append(Path(config.snapshot.url.removeprefix("file://")))
        forbidden = {Path(os.path.abspath(p)) for p in places} | {p.resolve() for p in places}
        return cls(agent_path_roots(config.agents), tuple(sorted(forbidden)))


def resolve(rules: PathRules, raw: object, operator: bool) -> Path:
    """The real path of the agent folder ``raw`` names, checked against the rules.

    Raises BadRequest (malformed, not a folder, no CLAUDE.md), Forbidden (not this key's to
    name, or one of ashd's own places), UnsafePath (a symlink on the way).
    """
    path = _absolute(raw)
    base, below = (Path("/"), path.parts[1:]) if operator else _within_roots(rules, path, str(raw))
    _refuse_own_places(rules, path, str(raw))
    fd = _open_beneath(rules, base, below, str(raw))
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        _refuse_own_places(rules, real, str(raw))
        try:
            st = os.stat("CLAUDE.md", dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise BadRequest(f"agent directory {raw} has no CLAUDE.md (a regular file, not a symlink); "
                             "add one (it is the agent's system prompt)")
    finally:
        os.close(fd)
    return real


def _absolute(raw: object) -> Path:
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise BadRequest("path must be a non-empty string naming a folder on the server")
    if not raw.startswith("/"):
        raise BadRequest(f"path must be absolute (a folder on the server), got {raw!r}; or {UPLOAD_HINT}")
    pieces = raw.split("/")
    if ".." in pieces:
        raise BadRequest(f"path must not contain '..': {raw!r}")
    return Path("/", *(p for p in pieces if p not in ("", ".")))


def _refuse_own_places(rules: PathRules, path: Path, raw: str) -> None:
    for place in rules.forbidden:
        if path.is_relative_to(place):
            raise Forbidden(f"path {raw} is inside {place}, which holds ashd's own data or other sandboxes; "
                            f"agent folders are never deployed from there; {UPLOAD_HINT}")


def _within_roots(rules: PathRules, path: Path, raw: str) -> tuple[Path, tuple[str, ...]]:
    if not rules.roots:
        raise Forbidden(f"this API key may not register a folder on the server (path {raw}): that is "
                        f"for the operator's keys; {UPLOAD_HINT}")
    for root in rules.roots:
        if path.is_relative_to(root):
            return root, path.relative_to(root).parts
    shown = ", ".join(str(r) for r in rules.roots)
    raise Forbidden(f"path {raw} is outside the folders this server allows (agents.path_roots: {shown}); "
                    f"name a folder inside one of them, or {UPLOAD_HINT}")


def _open_beneath(rules: PathRules, base: Path, below: tuple[str, ...], raw: str) -> int:
    """``base`` (trusted: ``/`` or a configured root) then each name with O_NOFOLLOW."""
    if len(below) > MAX_DEPTH:
        raise BadRequest(f"path {raw} is deeper than {MAX_DEPTH} folders")
    banned = _identities(rules.forbidden)
    try:
        fd = os.open(base, DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError:
        raise NotFound(f"the folder {base} (for path {raw}) does not exist on the server") from None
    try:
        _check_identity(fd, banned, raw)
        for i, name in enumerate(below):
            try:
                nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise BadRequest(f"agent path {raw} is not a directory on the server") from None
            except OSError:
                shown = base.joinpath(*below[: i + 1])
                raise UnsafePath(f"agent path {raw}: {shown} is a symlink or not a directory; ashd never "
                                 "follows symlinks in a deploy path (give the folder's real path)") from None
            os.close(fd)
            fd = nxt
            _check_identity(fd, banned, raw)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _identities(places: tuple[Path, ...]) -> frozenset[tuple[int, int]]:
    out = set()
    for place in places:
        try:
            st = os.stat(place)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return frozenset(out)


def _check_identity(fd: int, banned: frozenset[tuple[int, int]], raw: str) -> None:
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) in banned:
        raise Forbidden(f"path {raw} passes through a folder that holds ashd's own data or other "
                        f"sandboxes; agent folders are never deployed from there; {UPLOAD_HINT}")

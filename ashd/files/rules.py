"""Which names listings and bundles leave out (Ash's lists: dependencies, VCS, caches, runtime files)."""

from __future__ import annotations

from collections.abc import Callable

SKIP_NAMES = frozenset({
    "node_modules", ".git", "__pycache__", ".cache", ".npm", ".pnpm-store", ".yarn", ".venv", "venv",
    ".next", ".turbo", ".pytest_cache", ".mypy_cache", ".ruff_cache",
})
SKIP_SUFFIXES = (".sock", ".lock", ".pid")


def skipped(name: str) -> bool:
    """True for a name no listing or bundle shows, whatever its type."""
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES) or name.endswith(".ashd-tmp")


def listing_skip(include_hidden: bool) -> Callable[[str], bool]:
    """The skip rule of a file listing; ``include_hidden=False`` also hides dot-names."""
    if include_hidden:
        return skipped
    return lambda name: skipped(name) or name.startswith(".")


def bundle_skip(name: str) -> bool:
    """A workspace bundle also leaves out ``.env*`` files (secrets)."""
    return skipped(name) or name.startswith(".env")


def path_skipped(path: str, skip: Callable[[str], bool]) -> bool:
    """True if any component of a ``/``-separated path is skipped."""
    return any(skip(part) for part in path.split("/"))

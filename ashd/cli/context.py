"""What every ``ashctl`` command handler gets, and the exit codes scripts rely on."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from ashd.client.client import AshdClient
from ashd.client.discovery import Target

EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141
SESSION_ID = "session id"


@dataclass(frozen=True)
class Context:
    """What a command handler needs: the client, the flags and the streams."""

    client: AshdClient
    json: bool
    out: TextIO
    err: TextIO
    environ: Mapping[str, str]
    target: Target | None = None


Handler = Callable[[argparse.Namespace, Context], int]


class Leaf(Protocol):
    """Adds one command (with the global options) to a sub-command group."""

    def __call__(self, group: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser: ...


def emit(ctx: Context, raw: Any, human: str) -> int:
    """Print ``raw`` as JSON under --json, else the human text; returns EXIT_OK."""
    ctx.out.write((json.dumps(raw, indent=2) if ctx.json else human) + "\n")
    return EXIT_OK


class ProgressBar:
    """``done/total`` on stderr while bytes move, only when stderr is a terminal."""

    def __init__(self, err: TextIO, label: str) -> None:
        self._err, self._label = err, label
        self._shown = err.isatty() if hasattr(err, "isatty") else False
        self._last = -1

    def __call__(self, done: int, total: int | None) -> None:
        if not self._shown:
            return
        percent = int(done * 100 / total) if total else -1
        if percent == self._last and total:
            return
        self._last = percent
        size = f"{done / 1048576:.1f}" + (f"/{total / 1048576:.1f} MiB" if total else " MiB")
        self._err.write(f"\r{self._label}: {size}" + (f" {percent}%" if total else ""))
        self._err.flush()

    def close(self) -> None:
        if self._shown and self._last != -1:
            self._err.write("\n")


@contextlib.contextmanager
def progress(ctx: Context, label: str) -> Iterator[None]:
    """Show a :class:`ProgressBar` for the client's transfers inside the block."""
    bar = ProgressBar(ctx.err, label)
    ctx.client.progress = bar
    try:
        yield
    finally:
        ctx.client.progress = None
        bar.close()


def read_input(path: str) -> bytes:
    """The bytes of ``path`` ("-" is stdin)."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()

"""Tee an agent process's stderr into its log file and its in-memory ring.

The launcher gives the bridge a pipe for stderr; one daemon thread per process reads it
line by line, appends each line to ``sandbox.log`` and to the session's
:class:`~ashd.sandbox.logring.LogRing`. The thread only reads and appends, so the bridge
never waits on ashd for long; it ends at EOF (the process and all holders of the pipe
are gone).

``sandbox.log`` is on the data disk, outside the workspace image's quota, and how much the
CLI prints is the CLI's business: past :data:`MAX_LOG_BYTES` it becomes ``sandbox.log.1``
(replacing the one before) and a new one starts, so a sandbox's log takes at most twice that
whatever reaches it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import IO

from ashd.sandbox.logring import LogRing

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
MAX_LOG_BYTES = 8 * 1024 * 1024


def start(stream: IO[bytes], log_path: Path, ring: LogRing, name: str) -> threading.Thread:
    """Start the pump thread (daemon) and return it; it closes ``stream`` at EOF."""
    thread = threading.Thread(target=_pump, args=(stream, log_path, ring), name=name, daemon=True)
    thread.start()
    return thread


def _pump(stream: IO[bytes], log_path: Path, ring: LogRing) -> None:
    out: IO[bytes] | None = None
    try:
        out = open(log_path, "ab")  # rotated in the loop
        while line := stream.readline(MAX_LINE_BYTES):
            if out.tell() + len(line) > MAX_LOG_BYTES:
                out = _rotated(out, log_path)
            out.write(line)
            out.flush()
            ring.add("stderr", line.decode(errors="replace"))
    except (OSError, ValueError) as exc:  # boundary: a pump must never take the daemon down
        log.error("log pump for %s stopped: %s", log_path, exc)
    finally:
        if out is not None:
            out.close()
        stream.close()


def _rotated(out: IO[bytes], log_path: Path) -> IO[bytes]:
    """``log_path`` moved to ``<name>.1`` and a new one opened."""
    out.close()
    os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    return open(log_path, "ab")

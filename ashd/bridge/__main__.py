"""``python -m ashd.bridge SETTINGS_FILE``: the per-session bridge process.

Started by ashd as a child in its own process group, with an environment ashd built for
the CLI. Readiness: after it listens on its socket and the CLI is connected, it writes one
byte (``R``) to stdout and closes stdout. Its stderr is the sandbox log.
Exit codes: 0 clean shutdown, 1 the agent process failed, 2 bad settings.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from ashd.bridge.driver import Driver
from ashd.bridge.server import BridgeServer
from ashd.wire import protocol
from ashd.wire.settings import BridgeSettings

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGKILL us when ashd dies, so no bridge outlives its daemon.

    SIGKILL, not SIGTERM: a graceful shutdown takes seconds, during which a restarted ashd
    could already resume the same session. The sandbox goes with the bridge: bwrap runs with
    ``--die-with-parent`` and is the init of the sandbox's pid namespace, so every process in
    it (daemonized tools included) dies when bwrap does; ashd's start-up sweep removes what
    is left of its cgroups and mounts.

    ``parent``: the pid read before asking; False if it already died (the request came too late).
    A bridge forked by the zygote (ashd/bridge/zygote.py) asks for the zygote, which asks for ashd.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent


async def _run(settings: BridgeSettings) -> int:
    server = BridgeServer(Path(settings.socket_path), settings.session_id, settings.cli_path, settings.workspace)
    driver = Driver(settings, session_store=server.transcripts)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        os.write(1, protocol.READY_BYTE)
        os.close(1)

    announcer = asyncio.ensure_future(announce())
    try:
        return await server.serve(driver, on_ready=ready)
    finally:
        announcer.cancel()


def main(argv: list[str] | None = None, parent_checked: bool = False) -> int:
    """``parent_checked``: the caller (the zygote's child) already tied its life to its parent."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[bridge] %(levelname)s %(message)s")
    if not parent_checked and not die_with_parent(os.getppid()):  # ashd died before prctl took effect
        return 1
    if len(args) != 1:
        print("usage: python -m ashd.bridge SETTINGS_FILE", file=sys.stderr)
        return 2
    try:
        settings = BridgeSettings.read(Path(args[0]))
    except (OSError, ValueError, TypeError) as exc:
        print(f"[bridge] cannot read settings {args[0]}: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())

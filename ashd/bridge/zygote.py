"""``python -m ashd.bridge.zygote``: one pre-imported Python process per daemon that forks bridges.

Importing the bridge (the Claude Agent SDK pulls in ``mcp``, ``jsonschema``, pydantic) takes
about a second of CPU and ~50 MiB of private memory per process. The zygote pays it once:
ashd starts it at start-up, and each session start asks it to fork. The child runs
:func:`ashd.bridge.__main__.main` exactly as ``python -m ashd.bridge`` would; it shares the
imported pages with the zygote and every other bridge (copy on write, ``gc.freeze``).

Protocol (ashd's side: :mod:`ashd.sandbox.zygote`), on a ``SOCK_SEQPACKET`` socket whose fd is the argument:
ashd sends ``b"S"`` with four descriptors (SCM_RIGHTS): the bridge's stdout, its stderr, a
status pipe and a memfd holding the request (JSON: ``argv``, ``env``, ``cwd``); the zygote
forks and answers the child's pid (``b"P"`` + 4 bytes). When the child exits, the zygote
writes its raw wait status (4 bytes) to the status pipe and closes it; EOF without a status
means the zygote died (so did the child: its death signal is tied to the zygote).

Isolation (docs/security.md): the zygote never reads a request, so it holds no session's
data; its environment is empty but for PATH and LANG. The child, before any bridge code:
starts its own session (process group), asks for SIGKILL when the zygote dies (the zygote
dies with ashd the same way), takes its three standard streams and closes every other
descriptor (the control socket, other children's status pipes and pidfds), then reads its
request, its environment and its working directory.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import selectors
import socket
import struct
import sys
import traceback

# The point of the zygote: everything a bridge imports, imported once before any fork.
from ashd.bridge import __main__ as bridge

# What the SDK's first connect imports on its own (anyio loads its event-loop backend and its
# subprocess and stream support on first use): 7-18 ms in every forked bridge before it can
# spawn the CLI, paid once here instead (tests/bridge/test_zygote.py keeps the list whole).
FIRST_CONNECT_IMPORTS = (
    "anyio._backends._asyncio", "anyio._core._subprocesses", "anyio._core._streams", "anyio._core._sockets",
    "anyio._core._resources", "anyio.abc._eventloop", "anyio.abc._sockets", "anyio.abc._testing",
    "anyio.streams.stapled", "anyio.streams.tls",
)

REQUEST = b"S"
PID_REPLY = b"P"
FDS_PER_REQUEST = 4
STATUS = struct.Struct("=i")


def _show_as(argv: list[str]) -> None:
    """Make /proc/self/cmdline (ps, psutil, operators' scripts) read ``argv`` as if this process
    had been started with it, like setproctitle(3): the command line is rewritten in place, in
    the memory the kernel shows, which runs on into the environment strings (ashd gives the
    zygote ``ASHD_ZYGOTE_ROOM`` for that; the child's own environment lives elsewhere once replaced)."""
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(f) for f in fields[45:49])
    room = (env_end if env_start == arg_end else arg_end) - arg_start
    title = " ".join(argv).encode()[:room - 1] + b"\0"
    # Shorter than the old argv: zeros to its end, so the kernel reads the whole title.
    title = title.ljust(arg_end - arg_start, b"\0")
    ctypes.memmove(arg_start, title, len(title))


def _child(fds: list[int]) -> None:
    """In the forked child: become a fresh bridge process, then run the bridge. Never returns."""
    code = 1
    try:
        os.setsid()
        if not bridge.die_with_parent(os.getppid()):
            os._exit(1)
        stdout, stderr, _status, request = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        with os.fdopen(request, "rb", closefd=False) as fh:
            fh.seek(0)
            spec = json.loads(fh.read())
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
        os.environ.clear()  # nothing points into the original environment strings any more
        os.environ.update(spec["env"])
        os.chdir(spec["cwd"])
        sys.argv = ["ashd.bridge", *spec["argv"]]
        _show_as([sys.executable, "-P", "-m", "ashd.bridge", *spec["argv"]])
        code = bridge.main(spec["argv"], parent_checked=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


class Zygote:
    """The fork loop: one request at a time; children are watched through pidfds."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._selector = selectors.DefaultSelector()
        self._selector.register(control, selectors.EVENT_READ, None)
        self._children: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status fd)

    def serve(self) -> int:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    if not self._request():
                        return 0
                else:
                    self._reap(key.fd)

    def _request(self) -> bool:
        """Fork one bridge. False when ashd closed the control socket."""
        try:
            msg, ancdata, _flags, _addr = socket.recv_fds(self._control, 16, FDS_PER_REQUEST)
        except ConnectionError:
            return False
        if not msg:
            return False
        fds = list(ancdata)
        if msg != REQUEST or len(fds) != FDS_PER_REQUEST:
            for fd in fds:
                os.close(fd)
            self._control.send(PID_REPLY + STATUS.pack(-1))
            return True
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            _child(fds)
        status_fd = fds[2]
        for fd in (fds[0], fds[1], fds[3]):
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self._children[pidfd] = (pid, status_fd)
        self._selector.register(pidfd, selectors.EVENT_READ, pid)
        self._control.send(PID_REPLY + STATUS.pack(pid))
        return True

    def _reap(self, pidfd: int) -> None:
        pid, status_fd = self._children.pop(pidfd)
        self._selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        try:
            os.write(status_fd, STATUS.pack(status))
        except OSError:
            pass  # ashd no longer listens for this one
        os.close(status_fd)


def preload() -> None:
    """Import what a bridge would import lazily on its first connect (see FIRST_CONNECT_IMPORTS)."""
    for name in FIRST_CONNECT_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # another anyio: its bridges import what it needs themselves
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: python -m ashd.bridge.zygote CONTROL_FD\n")
        return 2
    parent = os.getppid()
    if not bridge.die_with_parent(parent):
        return 1
    control = socket.socket(fileno=int(argv[1]))
    preload()
    gc.collect()
    gc.freeze()  # the imported objects stay on shared pages: the collector never writes to them
    return Zygote(control).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The few Linux system calls Python 3.11's ``os`` lacks: setns, unshare, mount, umount2.

Each raises OSError with errno on failure. setns/unshare affect only the calling thread's
namespaces, which is what :mod:`ashd.sandbox.netns` relies on.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

# The C library's symbols as this process already has them (dlopen(NULL)): no
# ctypes.util.find_library, which runs ``ldconfig -p`` in a subprocess (tens of ms).
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def bind_mount(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND)


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    what = f"mount --bind {source} {target}" if flags & MS_BIND else f"mount {source} {target}"
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None), what)


def umount(target: str, detach: bool = True) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH if detach else 0), f"umount {target}")

"""ashd's own file-descriptor limit, raised to the hard limit at start.

Every sandbox costs ashd descriptors: its bridge's pipes and socket, and one per open proxy
connection (two while a connection is relayed upstream). A shell's default soft limit
(1024) is reached by a few busy sandboxes, and then nothing new can be opened for anyone, so
the daemon raises its soft ``RLIMIT_NOFILE`` to the hard limit (the systemd unit sets
``LimitNOFILE``) before it opens anything, and logs what that leaves room for.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

BRIDGE_FDS = 16  # pipes, sockets, the workspace image and the log of one sandbox, rounded up


def worst_case_per_sandbox(max_connections: int) -> int:
    """Descriptors one sandbox can hold in ashd: both proxies at their cap, each relayed."""
    return BRIDGE_FDS + 2 * 2 * max_connections


def raise_nofile(max_connections: int) -> int:
    """Raise the soft limit to the hard one; returns the limit now in force. Never raises."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        log.info("file descriptor limit: unlimited")
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("file descriptor limit raised from %d to %d (the hard limit)", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, target, exc)
    room = soft // worst_case_per_sandbox(max_connections)
    log.info("file descriptor limit %d: room for %d sandboxes with every proxy connection open "
             "(proxy.max_connections_per_sandbox = %d); raise LimitNOFILE for more", soft, room, max_connections)
    return soft

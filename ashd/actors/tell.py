"""Tell up: fire-and-forget messages between actors, with no dropped futures.

``proxy.method(...)`` is an ask: it returns a future, and an exception in the recipient is
stored on that future. Dropping the future drops the error, unlogged. :func:`tell` sends the
call with pykka's tell semantics instead (``defer``): nothing comes back; an exception in the
recipient goes to its ``on_failure`` (the actor crashes and its supervisor decides), and a
recipient that has already stopped is logged here, with what the message was about.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

log = logging.getLogger(__name__)


def tell(call: Any, *args: Any, context: str, **kwargs: Any) -> bool:
    """Send ``call(*args, **kwargs)`` (a proxy method) as a tell. ``context`` says what it
    was for, in the log line if it cannot be delivered. Returns False if the recipient had
    already stopped. Never blocks, never raises for a stopped recipient."""
    try:
        call.defer(*args, **kwargs)
    except pykka.ActorDeadError:
        log.info("%s: not delivered; the recipient has stopped", context)
        return False
    return True

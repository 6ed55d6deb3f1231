"""ashd/actors/timers.py: callbacks run in time order on one thread; cancelled ones never."""

from __future__ import annotations

import threading

from ashd.actors.timers import Timers


def test_callbacks_run_in_time_order_and_cancelled_ones_do_not() -> None:
    timers = Timers()
    ran: list[str] = []
    done = threading.Event()
    try:
        timers.call_later(0.2, lambda: (ran.append("late"), done.set()))
        timers.call_later(0.05, lambda: ran.append("early"))
        timers.call_later(0.1, lambda: ran.append("cancelled")).cancel()
        timers.call_later(0.0, lambda: 1 / 0)  # a failing callback does not stop the thread
        assert done.wait(5)
        assert ran == ["early", "late"]
    finally:
        timers.stop()


def test_stop_drops_what_is_scheduled() -> None:
    timers = Timers()
    ran = threading.Event()
    timers.call_later(0.2, ran.set)
    timers.stop()
    assert not ran.wait(0.4)

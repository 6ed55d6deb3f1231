"""The hop tracer's reading of a perf script (benchmarks/message_hops.py): epoll returns and
scheduler switches."""

from benchmarks.message_hops import Threads, parse


def switch(t: str, prev: int, state: str, nxt: int) -> str:
    return (f"  x  {prev}/{prev}  {t}: sched:sched_switch: prev_comm=x prev_pid={prev} prev_prio=120 "
            f"prev_state={state} ==> next_comm=y next_pid={nxt} next_prio=120")


TRACE = "\n".join([
    switch("100.000000", 10, "S", 20),
    "  python  10/10  100.001000: syscalls:sys_exit_epoll_wait: 0x0",
    switch("100.002000", 20, "R", 10),
    "  python  10/10  100.002100: syscalls:sys_exit_epoll_wait: 0x2",
    switch("100.003000", 10, "R+", 20),
    switch("100.004000", 20, "S", 10),
    "  python  10/10  100.004500: syscalls:sys_enter_sendto: fd: 0x00000007, buff: 0x7f, len: 0x0000006e",
    "  python  10/10  100.005000: syscalls:sys_exit_epoll_wait: 0xfffffffffffffffc",
])


def test_parse_keeps_epoll_returns_with_events_only() -> None:
    calls = parse(TRACE, {10})
    assert [(c.call, c.size) for c in calls] == [("woke", 2), ("sendto", 0x6E)]
    assert calls[0].t == 100.0021 and calls[1].fd == 7


def test_split_follows_the_scheduler() -> None:
    threads = Threads(TRACE, {10, 20})
    split = threads.split(10, 100.0005, 100.0045)
    # blocked until 100.002, running until 100.003, preempted (R+) until 100.004, then running
    assert round(split["blocked"] * 1e3, 3) == 1.5
    assert round(split["running"] * 1e3, 3) == 1.5
    assert round(split["runnable"] * 1e3, 3) == 1.0
    other = threads.split(20, 100.0021, 100.0025)  # preempted at 100.002
    assert other["running"] == other["blocked"] == 0.0 and round(other["runnable"] * 1e3, 3) == 0.4

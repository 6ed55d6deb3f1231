"""A real sandbox (setpriv + bwrap, as its own uid) seen from inside: each test is a leak check."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from ashd.sandbox import bwrap, cliwrap
from tests.sandbox.conftest import SECRET, Box


def test_argv_carries_no_environment_values() -> None:
    mounts = bwrap.Mounts("/c", "/w", "/h", "/p/claude", "/p/mcp.json", 1 << 20, "/p/CLAUDE.md")
    argv = bwrap.bwrap_argv(mounts, bwrap.Fds(3, 4, 5, 6, 7), ["-p", "x"])
    assert "--setenv" not in argv and "--clearenv" in argv and argv[argv.index("--args") + 1] == "3"
    for flag in ("--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and argv[argv.index("--hostname") + 1] == "sandbox"
    assert cliwrap.env_args({"A": "1"}) == b"--setenv\0A\x001\0"


def test_the_wrapper_fills_the_precomputed_command() -> None:
    mounts = bwrap.Mounts("/c", "/w", "/h", "/p/claude", "/p/mcp.json", 1 << 20, "/p/CLAUDE.md")
    prefix, slots = bwrap.wrapper_command(1234, mounts)
    assert prefix[:len(bwrap.setpriv_argv(1234))] == bwrap.setpriv_argv(1234) and prefix[-1] == "--"
    plan = {"command": prefix, "fd_slots": slots}
    fds = {"args": 3, "passwd": 4, "group": 5, "hosts": 6, "nsswitch": 7}
    built = cliwrap.command(plan, fds, bwrap.INSIDE_CLI, ["-p", "x"])
    # The same argv the wrapper built before it was precomputed.
    assert built == bwrap.setpriv_argv(1234) + bwrap.bwrap_argv(mounts, bwrap.Fds(3, 4, 5, 6, 7), ["-p", "x"])


def test_identity_is_an_unprivileged_host_uid(make_box: Callable[..., Box]) -> None:
    box = make_box()
    out = box.run("id -u; id -G; hostname; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'").stdout.split("\n")
    assert out[0] == str(box.kit.uid) and int(out[0]) >= 1000
    assert out[1] == str(box.kit.uid)
    assert out[2] == "sandbox"
    assert "CapEff:\t0000000000000000" in out


def test_filesystem_view_is_minimal_and_read_only(make_box: Callable[..., Box], tmp_path: Path) -> None:
    box = make_box()
    (tmp_path / "host-secret").write_text(SECRET)
    res = box.run(f"ls /; cat /etc/shadow; ls /root; cat {tmp_path}/host-secret; ls {box.kit.root}; "
                  "touch /usr/x /etc/x /x; cat /workspace/hello.txt; echo w > /workspace/new.txt && echo WROTE")
    listing = set(res.stdout.split("\n")[:14])
    assert {"usr", "workspace", "tmp", "home", "proc", "dev", "etc"} <= listing
    assert "root" not in listing and "run" not in listing and "srv" not in listing
    assert SECRET not in res.stdout
    assert "/etc/shadow: No such file" in res.stderr
    assert res.stderr.count("Read-only file system") == 3
    assert "hi" in res.stdout and "WROTE" in res.stdout
    assert (box.kit.workspace / "new.txt").stat().st_uid == box.kit.uid


def test_policy_files_cannot_be_rewritten_or_replaced(make_box: Callable[..., Box], tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    (agent / ".claude" / "skills").mkdir(parents=True)
    (agent / ".claude" / "settings.json").write_text('{"permissions": {"deny": ["WebFetch"]}}')
    box = make_box(agent_dir=agent)
    res = box.run("echo '{}' > .claude/settings.json; echo '{}' > .mcp.json; mkdir .claude/skills/evil; "
                  "mv .claude .claude-old; rm -f .mcp.json; cat .claude/settings.json")
    assert res.stderr.count("Read-only file system") == 3, res.stderr
    assert "Device or resource busy" in res.stderr or "cannot move" in res.stderr
    assert "WebFetch" in res.stdout


def test_environment_is_only_the_allowlist(make_box: Callable[..., Box]) -> None:
    res = make_box().run("env; echo; tr '\\0' ' ' < /proc/1/cmdline")
    assert "PASSED_OK=visible" in res.stdout
    assert SECRET not in res.stdout and "NOT_PASSED" not in res.stdout


def test_nested_user_namespaces_fail(make_box: Callable[..., Box]) -> None:
    res = make_box().run("unshare -U true; echo rc=$?; unshare -Ur true; echo rc=$?")
    assert "rc=0" not in res.stdout


def test_network_is_private(make_box: Callable[..., Box]) -> None:
    box = make_box()
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    inside = box.kit.netns.listen("127.0.0.1", 8080)
    try:
        port = host.getsockname()[1]
        res = box.run(f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>&1 && echo HOST-REACHED; "
                      "(exec 3<>/dev/tcp/1.1.1.1/53) 2>&1 && echo NET-REACHED; "
                      "(exec 3<>/dev/tcp/127.0.0.1/8080) && echo INSIDE-OK; ls /sys/class/net")
        assert "HOST-REACHED" not in res.stdout and "NET-REACHED" not in res.stdout
        assert "INSIDE-OK" in res.stdout
    finally:
        host.close()
        inside.close()


def test_connections_to_a_listener_inside_have_nagle_off(make_box: Callable[..., Box]) -> None:
    """The proxies serve the CLI's connections through asyncio, which turns Nagle's algorithm off
    only when the socket says it is TCP; otherwise each streamed reply waited for the CLI's
    delayed ACK (40 ms per message)."""
    box = make_box()
    listener = box.kit.netns.listen("127.0.0.1", 8081)
    seen: list[int] = []

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, box.kit.netns.run_inside,
                                   lambda: socket.create_connection(("127.0.0.1", 8081), timeout=5).close())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        server.close()

    asyncio.run(serve())
    assert seen and seen[0] != 0


def test_tmp_is_private_and_bounded(make_box: Callable[..., Box]) -> None:
    res = make_box().run("dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; stat -c %s /tmp/fill")
    assert "No space left on device" in res.stdout
    assert int(res.stdout.strip().split("\n")[-1]) <= 8 << 20

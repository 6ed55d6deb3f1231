"""The SDK's ``cli_path``: start the real CLI inside the sandbox.

Run as ``python -m ashd.sandbox.cliwrap <plan> <cli args...>`` by the bridge (which stays
outside the boundary, as ashd's user) whenever the SDK spawns the CLI (in fact as
``pyrun.lean_module_argv``: ``python -I -S -c`` calling :func:`entry`). It:

1. joins the sandbox's cgroups (so every process inside is limited and counted),
2. puts the environment and the synthetic /etc files in memfds (never on argv),
3. execs ``nsenter`` (into the sandbox's network namespace, where the model proxy is already
   listening) -> ``setpriv`` (drop to the sandbox uid, no caps) -> ``bwrap`` -> the CLI.

``<plan> --ashd-exec PROGRAM ARGS...`` starts PROGRAM instead of the CLI, with the same
isolation (the bridge's ``exec`` command: ``/bin/sh -c <command>`` from the API).

The plan is written by :class:`~ashd.sandbox.kit.SandboxKit` (mode 0600, outside the
sandbox, root's), with the setpriv + bwrap command line already built
(``bwrap.wrapper_command``): this runs on every CLI start (a wake waits for it), so it
imports almost nothing and only fills in what differs per start (the memfds' numbers, the
program and its arguments). The plan is in ``marshal`` format (built in: ``json`` would
import ``re`` and ``enum``, ~10 ms at every start; the writer is ashd with this same
interpreter); no ``runpy``, no dataclasses, no ``ashd.files``, no ``ctypes``. The environment
inside is the plan's fixed variables plus, from this process's own environment, only the
names the plan lists (the session token and the agent's/session's variables) and the SDK's
``CLAUDE_CODE_*`` settings.
"""

from __future__ import annotations

import marshal
import os
import resource
import sys

SDK_PREFIXES = ("CLAUDE_CODE_", "CLAUDE_AGENT_SDK_")
NSENTER = "/usr/bin/nsenter"  # util-linux, like setpriv (isolation.py checks both)
EXEC_FLAG = "--ashd-exec"  # ashd.bridge.execute.EXEC_FLAG (not imported: this must start fast)
EXEC_PROGRAMS = ("/bin/sh",)
RLIMITS = {"nproc": resource.RLIMIT_NPROC, "core": resource.RLIMIT_CORE}


def program_and_args(args: list[str], cli: str) -> tuple[str, list[str]]:
    """Pure: what to run inside (``cli``, the CLI's path inside the sandbox, unless an exec),
    from the wrapper's arguments after the plan.

    Raises ValueError for an exec of anything but a known program.
    """
    if args[:1] != [EXEC_FLAG]:
        return cli, args
    if len(args) < 2 or args[1] not in EXEC_PROGRAMS:
        raise ValueError(f"{EXEC_FLAG} takes one of {', '.join(EXEC_PROGRAMS)}")
    return args[1], args[2:]


def inside_env(plan: dict[str, object], environ: dict[str, str]) -> dict[str, str]:
    """Pure: the environment the CLI gets."""
    names = plan.get("passthrough", [])
    assert isinstance(names, list)
    env = {k: v for k, v in environ.items() if k.startswith(SDK_PREFIXES)}
    env.update({k: environ[k] for k in names if k in environ})
    fixed = plan.get("env", {})
    assert isinstance(fixed, dict)
    env.update(fixed)
    return env


def env_args(env: dict[str, str]) -> bytes:
    """bwrap's ``--args`` payload: ``--setenv NAME VALUE`` per variable, NUL-separated."""
    parts: list[str] = []
    for name, value in env.items():
        if "\0" in name or "\0" in value or "=" in name or not name:
            raise ValueError(f"environment variable {name!r} cannot be passed to the sandbox")
        parts += ["--setenv", name, value]
    return b"".join(p.encode() + b"\0" for p in parts)


def command(plan: dict[str, object], fds: dict[str, int], program: str, args: list[str]) -> list[str]:
    """Pure: the plan's precomputed setpriv + bwrap argv (``bwrap.wrapper_command``) with this
    start's memfd numbers in their slots, then the program and its arguments."""
    argv = plan["command"]
    slots = plan["fd_slots"]
    assert isinstance(argv, list) and isinstance(slots, dict)
    out = [str(a) for a in argv]
    for name, index in slots.items():
        out[index] = str(fds[name])
    return [*out, program, *args]


def netns_argv(netns: str) -> list[str]:
    """``nsenter`` into the sandbox's network namespace (a setns(2) and an exec, no fork), ahead
    of setpriv: ~1 ms, where setns through ``ctypes`` cost ~4 ms of import at every start."""
    return [NSENTER, f"--net={netns}", "--"]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # inheritable: bwrap reads it after exec
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m ashd.sandbox.cliwrap PLAN [CLI ARGS...]\n")
        return 2
    with open(argv[1], "rb") as fh:
        plan = marshal.load(fh)  # noqa: S302 - root's own file (0600, outside the sandbox), written by ashd
    pid = str(os.getpid())
    for procs in plan["cgroup_procs"]:
        with open(procs, "w") as out:
            out.write(pid)
    program, args = program_and_args(argv[2:], plan["program"])
    # Set as root, enforced once setpriv drops the uid; an exec is held to the tools' limit.
    for name, value in plan["rlimits" if program == plan["program"] else "rlimits_exec"].items():
        resource.setrlimit(RLIMITS[name], (value, value))
    fds = {"args": _memfd("env", env_args(inside_env(plan, dict(os.environ))))}
    fds.update({name: _memfd(name, text.encode()) for name, text in plan["etc"].items()})
    run = [*netns_argv(plan["netns"]), *command(plan, fds, program, args)]
    os.execve(run[0], run, {"PATH": "/usr/bin:/bin"})  # noqa: S606 - argv list, fixed binary
    return 127  # not reached


def entry() -> int:
    """The process's exit code (``sys.argv`` as for ``python -m``); 126 when the wrapper failed."""
    try:
        return main(sys.argv)
    except Exception as exc:
        sys.stderr.write(f"ashd sandbox wrapper failed: {exc}\n")
        return 126


if __name__ == "__main__":
    sys.exit(entry())

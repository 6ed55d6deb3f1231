"""The SDK's ``cli_path``: start the real CLI inside the sandbox.

Run as ``python -m ashd.sandbox.cliwrap <plan.json> <cli args...>`` by the bridge (which stays
outside the boundary, as ashd's user) whenever the SDK spawns the CLI. It:

1. joins the sandbox's cgroups (so every process inside is limited and counted),
2. enters the sandbox's network namespace (where the model proxy is already listening),
3. puts the environment and the synthetic /etc files in memfds (never on argv),
4. execs ``setpriv`` (drop to the sandbox uid, no caps) -> ``bwrap`` -> the CLI.

``<plan.json> --ashd-exec PROGRAM ARGS...`` starts PROGRAM instead of the CLI, with the same
isolation (the bridge's ``exec`` command: ``/bin/sh -c <command>`` from the API).

The plan is written by :class:`~ashd.sandbox.isolating_launcher.IsolatingLauncher` (mode
0600, outside the sandbox). The environment inside is the plan's fixed variables plus, from
this process's own environment, only the names the plan lists (the session token and the
agent's/session's variables) and the SDK's ``CLAUDE_CODE_*`` settings. Keeps imports minimal:
it runs on every CLI start.
"""

from __future__ import annotations

import json
import os
import sys

from ashd.sandbox import bwrap, rlimits, syscalls

SDK_PREFIXES = ("CLAUDE_CODE_", "CLAUDE_AGENT_SDK_")
EXEC_FLAG = "--ashd-exec"  # ashd.bridge.execute.EXEC_FLAG (not imported: this must start fast)
EXEC_PROGRAMS = ("/bin/sh",)


def program_and_args(args: list[str]) -> tuple[str, list[str]]:
    """Pure: what to run inside, from the wrapper's arguments after the plan.

    Raises ValueError for an exec of anything but a known program.
    """
    if args[:1] != [EXEC_FLAG]:
        return bwrap.INSIDE_CLI, args
    if len(args) < 2 or args[1] not in EXEC_PROGRAMS:
        raise ValueError(f"{EXEC_FLAG} takes one of {', '.join(EXEC_PROGRAMS)}")
    return args[1], args[2:]


def rlimits_for(program: str, values: dict[str, int]) -> dict[str, int]:
    """Pure: the plan's rlimits, with an ``exec`` command held to the tools' task limit (like
    the Bash tool's commands, see ``rlimits.toolshell``) so it cannot starve the CLI."""
    if program == bwrap.INSIDE_CLI or "nproc" not in values:
        return values
    return {**values, "nproc": rlimits.tool_tasks(values["nproc"])}


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


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # inheritable: bwrap reads it after exec
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m ashd.sandbox.cliwrap PLAN [CLI ARGS...]\n")
        return 2
    with open(argv[1]) as fh:
        plan = json.load(fh)
    pid = str(os.getpid())
    for procs in plan["cgroup_procs"]:
        with open(procs, "w") as out:
            out.write(pid)
    program, args = program_and_args(argv[2:])
    rlimits.apply(rlimits_for(program, plan.get("rlimits", {})))  # set as root, enforced once setpriv drops the uid
    fd = os.open(plan["netns"], os.O_RDONLY | os.O_CLOEXEC)
    syscalls.setns(fd, syscalls.CLONE_NEWNET)
    os.close(fd)
    uid = int(plan["uid"])
    etc = bwrap.etc_files(uid)
    fds = bwrap.Fds(
        args=_memfd("env", bwrap.env_args(inside_env(plan, dict(os.environ)))),
        passwd=_memfd("passwd", etc["passwd"]), group=_memfd("group", etc["group"]),
        hosts=_memfd("hosts", etc["hosts"]), nsswitch=_memfd("nsswitch", etc["nsswitch"]),
    )
    mounts = bwrap.Mounts(**{**plan["mounts"], "optional_ro": tuple(plan["mounts"]["optional_ro"])})
    command = bwrap.setpriv_argv(uid) + bwrap.bwrap_argv(mounts, fds, args, program)
    os.execve(command[0], command, {"PATH": "/usr/bin:/bin"})  # noqa: S606 - argv list, fixed binary
    return 127  # not reached


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:
        sys.stderr.write(f"ashd sandbox wrapper failed: {exc}\n")
        sys.exit(126)

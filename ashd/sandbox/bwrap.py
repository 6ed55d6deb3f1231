"""The command line that puts the CLI in a sandbox (pure: builds argv lists, runs nothing).

``setpriv`` drops to the sandbox's own host uid first (bwrap's ``--uid`` alone would leave the
process root on the host), then bwrap builds the sandbox: new user/pid/ipc/uts/cgroup
namespaces, nested user namespaces disabled, no capabilities, its own hostname, a read-only
minimal root (``/usr`` and its symlinks, ``/etc/alternatives``, CA certificates, synthetic
passwd/group/hosts), a size-bounded private ``/tmp``, the workspace and HOME read-write and the
agent's ``.claude/`` and ``.mcp.json`` read-only on top of the workspace.

The network namespace is *not* created by bwrap: the process is already in the per-sandbox
namespace ashd prepared (``netns.py``), where the model proxy's socket is listening.

Nothing secret is on this argv (it is readable in ``/proc/<pid>/cmdline`` inside and out):
the environment arrives through ``--args FD``, the /etc files through ``--ro-bind-data FD``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ashd.files.agent_binds import AGENT_BINDS

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
INSIDE_WORKSPACE = "/workspace"
INSIDE_HOME = "/home/agent"
INSIDE_CLI = "/opt/claude/claude"
INSIDE_TOOLSHELL = "/opt/ashd/toolshell"  # CLAUDE_CODE_SHELL_PREFIX: see rlimits.toolshell
HOSTNAME = "sandbox"
# Public, read-only system files the tools commonly need (bound only when they exist).
OPTIONAL_RO = ("/etc/alternatives", "/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/ca-certificates")


@dataclass(frozen=True)
class Fds:
    """File descriptors (memfds) the wrapper passes to bwrap."""

    args: int  # NUL-separated "--setenv NAME VALUE" triples
    passwd: int
    group: int
    hosts: int
    nsswitch: int


@dataclass(frozen=True)
class Mounts:
    """Host paths bound into the sandbox; all must be reachable by the sandbox uid."""

    cli: str
    workspace: str
    home: str
    claude_dir: str  # a copy of the agent's .claude/, bound read-only at /workspace/.claude
    mcp_json: str  # bound read-only at /workspace/.mcp.json
    tmp_bytes: int
    claude_md: str  # the deployed CLAUDE.md, bound read-only at /workspace/CLAUDE.md
    optional_ro: tuple[str, ...] = ()  # those of OPTIONAL_RO that exist on this host
    toolshell: str = ""  # the Bash tool's wrapper (rlimits.toolshell), bound read-only if set


def setpriv_argv(uid: int) -> list[str]:
    """Become ``uid`` on the host with no supplementary groups and no capabilities at all."""
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def bwrap_argv(mounts: Mounts, fds: Fds, cli_args: list[str], program: str = INSIDE_CLI) -> list[str]:
    """bwrap's argv from its binary to the CLI's last argument.

    ``program``: what runs inside (the CLI; ``/bin/sh`` for an ``exec`` from the API).
    """
    if mounts.tmp_bytes <= 0:
        raise ValueError("tmp_bytes must be positive (bwrap --size takes bytes)")
    argv = [
        BWRAP,
        "--unshare-user", "--disable-userns",  # --disable-userns requires an explicit --unshare-user
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", HOSTNAME,
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
    ]
    for path in mounts.optional_ro:
        argv += ["--ro-bind", path, path]
    for fd, path in ((fds.passwd, "/etc/passwd"), (fds.group, "/etc/group"),
                     (fds.hosts, "/etc/hosts"), (fds.nsswitch, "/etc/nsswitch.conf")):
        argv += ["--perms", "0644", "--ro-bind-data", str(fd), path]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(mounts.tmp_bytes), "--tmpfs", "/tmp",  # noqa: S108 - the sandbox's own, size-bounded tmpfs
        "--ro-bind", mounts.cli, INSIDE_CLI,
        "--bind", mounts.workspace, INSIDE_WORKSPACE,
        "--bind", mounts.home, INSIDE_HOME,
    ]
    for bind in AGENT_BINDS:  # after the workspace: read-only copies cover the agent's own
        argv += ["--ro-bind", getattr(mounts, bind.mount), f"{INSIDE_WORKSPACE}/{bind.name}"]
    argv += [
        *(["--ro-bind", mounts.toolshell, INSIDE_TOOLSHELL] if mounts.toolshell else []),
        "--remount-ro", "/",
        "--chdir", INSIDE_WORKSPACE,
        "--clearenv",
        "--args", str(fds.args),
        "--", program, *cli_args,
    ]
    return argv


def wrapper_command(uid: int, mounts: Mounts) -> tuple[list[str], dict[str, int]]:
    """What the CLI wrapper execs, computed once when the sandbox is set up (pure): setpriv's
    and bwrap's argv up to the ``--`` before the program (the wrapper appends the program and
    its arguments), and for each memfd the wrapper makes at every start (``Fds``' fields) the
    index of the argv slot its number goes in. So the wrapper, which runs on every CLI start,
    imports and computes almost nothing."""
    sentinels = Fds(-1, -2, -3, -4, -5)
    argv = setpriv_argv(uid) + bwrap_argv(mounts, sentinels, [], "")
    argv.pop()  # the program
    slots = {}
    for name in Fds.__dataclass_fields__:
        marker = str(getattr(sentinels, name))
        if argv.count(marker) != 1:
            raise ValueError(f"bwrap's argv must hold the {name} descriptor exactly once")
        slots[name] = argv.index(marker)
    return argv, slots


def etc_files(uid: int) -> dict[str, bytes]:
    """Synthetic /etc files: the agent user, localhost, and files-only name lookup."""
    return {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{uid}:{uid}:agent:{INSIDE_HOME}:/bin/bash\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".encode(),
        "group": f"root:x:0:\nagent:x:{uid}:\nnogroup:x:65534:\n".encode(),
        "hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost ip6-localhost\n".encode(),
        "nsswitch": b"passwd: files\ngroup: files\nhosts: files\n",
    }

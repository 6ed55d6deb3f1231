"""Everything one sandbox needs on the host, set up before its CLI starts and torn down after.

``setup`` (in order): a host uid; the workspace image mounted (made and filled from the
plain workspace copy on first use); the agent's read-only policy files; cgroups with limits;
the network namespace; the plan the CLI wrapper reads. ``teardown`` undoes it in reverse and
never raises. Both block (tens of ms) and run on the sandbox's actor / watcher thread.

Host paths the sandbox uid must reach live under ``run_dir`` (``<mount_root>/<sandbox id>``,
mode 0711), because ashd's data dir is private (0700) to ashd.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ashd.files.agent_binds import PLAN_NAME, write_copies
from ashd.files.agent_folder import INSTRUCTIONS
from ashd.limit_fields import Limits
from ashd.sandbox import bwrap, rlimits, syscalls
from ashd.sandbox.cgroups import CgroupLayout, SandboxCgroup, tenant_level
from ashd.sandbox.netns import SandboxNetns
from ashd.sandbox.quota import IMAGE_NAME, WorkspaceDisk, chown_tree
from ashd.sandbox.uids import UidPool

WRAPPER_PLAN_NAME = "sandbox-plan.marshal"  # the plan again, for the CLI wrapper (cliwrap.py: fast to load)
BUSY_GROUP_RETRY_S = 15.0  # a second try at a killed sandbox's cgroups still busy after the first

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KitConfig:
    mount_root: Path
    cli: str  # host path of the CLI binary; must be readable by every sandbox uid
    defaults: Limits  # fully set: the effective limits never have None
    # Seconds a new sandbox runs without its CPU quota (sandbox.start_cpu_boost_s): the CLI's
    # start and its first query use more than one CPU; 0: the quota from the first instant.
    start_cpu_boost_s: float = 0.0


class SandboxKit:
    def __init__(self, config: KitConfig, uids: UidPool, cgroups: CgroupLayout,
                 sandbox_id: str, root: Path, agent_dir: Path | None, limits: Limits, tenant_id: str = "") -> None:
        """``tenant_id``: its cgroups go under the tenant's level (equal CPU per tenant); "": none."""
        self.config = config
        self.sandbox_id = sandbox_id
        self.root = root
        self.agent_dir = agent_dir
        self.limits = limits.over(config.defaults)
        self.run_dir = config.mount_root / sandbox_id
        self.disk = WorkspaceDisk(root / IMAGE_NAME, self.run_dir / "disk")
        self.cgroup = SandboxCgroup(cgroups, sandbox_id, tenant_level(tenant_id) if tenant_id else "")
        self.netns = SandboxNetns(self.run_dir / "netns")
        self.plan_path = root / PLAN_NAME
        self.wrapper_plan_path = root / WRAPPER_PLAN_NAME
        self._uids = uids
        self.uid = -1
        self._boost: threading.Timer | None = None

    @property
    def workspace(self) -> Path:
        return self.disk.mountpoint / "workspace"

    @property
    def home(self) -> Path:
        return self.disk.mountpoint / "home"

    @property
    def config_dir(self) -> Path:
        """The CLI's config dir (its transcripts) on the mounted image."""
        return self.home / ".claude"

    def give_config_dir(self) -> None:
        """Hand the config dir and its transcripts (ashd may have restored them, as root) to the
        sandbox uid. Blocking; before the CLI starts."""
        if not self.config_dir.is_symlink():
            os.lchown(self.config_dir, self.uid, self.uid)
            if (self.config_dir / "projects").is_dir():
                chown_tree(self.config_dir / "projects", self.uid)

    @property
    def policy_dir(self) -> Path:
        return self.run_dir / "policy"

    def setup(self, env: dict[str, str], passthrough: list[str]) -> None:
        """Prepare everything; raises OSError (after undoing what was done)."""
        try:
            self.uid = self._uids.acquire(self.sandbox_id, self.root / "uid")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.run_dir, 0o711)  # noqa: S103 - traverse only: sandbox uids reach their binds
            self._disk()
            self._policy()
            lim = self.limits
            assert lim.memory_mb and lim.cpus and lim.pids
            boost = self.config.start_cpu_boost_s
            self.cgroup.create(lim.memory_mb, None if boost > 0 else lim.cpus, lim.pids)
            if boost > 0:
                self._boost = threading.Timer(boost, self._end_boost, (lim.cpus,))
                self._boost.daemon = True
                self._boost.start()
            self.netns.create()
            self._write_plan(env, passthrough)
        except BaseException:
            self.teardown()
            raise

    def _end_boost(self, cpus: float) -> None:
        """The start's boost is over: the sandbox's CPU quota from now on (timer thread)."""
        try:
            self.cgroup.limit_cpu(cpus)
        except OSError as exc:  # its group is gone: the sandbox was torn down meanwhile
            log.debug("sandbox %s: CPU quota not set after its start: %s", self.sandbox_id, exc)

    def _disk(self) -> None:
        fresh = not self.disk.exists
        if fresh:
            assert self.limits.disk_mb
            self.disk.create(self.limits.disk_mb, self.uid)
        self.disk.mount()
        if fresh:
            try:
                self._fill_disk()
            except BaseException:
                # A half-filled image must not pass for this session's workspace next start.
                self.disk.umount()
                self.disk.image.unlink(missing_ok=True)
                raise
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.workspace.mkdir(exist_ok=True)
        if fresh or self.disk.owner() != self.uid or self.home.stat().st_uid != self.uid:
            self.disk.chown_tree(self.uid)
        os.chmod(self.disk.mountpoint, 0o700)
        # The live workspace and HOME also appear at their usual host paths (for ashd's own
        # readers and the bridge) while the sandbox runs.
        for name in ("workspace", "home"):
            host = self.root / name
            host.mkdir(mode=0o700, exist_ok=True)
            if not os.path.ismount(host):
                syscalls.bind_mount(str(self.disk.mountpoint / name), str(host))

    def _fill_disk(self) -> None:
        """First start: move the plain copies (made by workspace.prepare) onto the image."""
        for name in ("workspace", "home"):
            src = self.root / name
            if src.is_dir() and not (self.disk.mountpoint / name).exists():
                shutil.copytree(src, self.disk.mountpoint / name, symlinks=True)
                shutil.rmtree(src)
                src.mkdir(mode=0o700)  # placeholder: "this session has a workspace"

    def _policy(self) -> None:
        """Copies of the agent's .claude/, .mcp.json and CLAUDE.md (the instructions), from
        the deployed folder (read without following symlinks), root-owned, world-readable."""
        shutil.rmtree(self.policy_dir, ignore_errors=True)
        write_copies(self.agent_dir, self.policy_dir)
        self._restore_instructions((self.policy_dir / INSTRUCTIONS).read_text())
        assert self.limits.pids
        (self.policy_dir / "toolshell").write_text(rlimits.toolshell(self.limits.pids))
        for top, _dirs, files in os.walk(self.policy_dir):
            os.chmod(top, 0o755)  # noqa: S103 - read-only policy copies, readable by the sandbox uid
            for name in files:
                file_path = os.path.join(top, name)
                if not os.path.islink(file_path):
                    os.chmod(file_path, 0o644)
        os.chmod(self.policy_dir / "toolshell", 0o755)  # noqa: S103 - root-owned, run by the sandbox uid

    def _restore_instructions(self, text: str) -> None:
        """The workspace's own CLAUDE.md becomes the deployed text again, so snapshots and
        forks carry it (whatever sat there: a file, a link, a folder). The sandbox is not
        running yet, so nothing races this."""
        path = self.workspace / INSTRUCTIONS
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as out:
            os.fchown(out.fileno(), self.uid, self.uid)
            out.write(text)

    def mounts(self) -> bwrap.Mounts:
        assert self.limits.tmp_mb
        return bwrap.Mounts(
            cli=self.config.cli, workspace=str(self.workspace), home=str(self.home),
            claude_dir=str(self.policy_dir / "claude"), mcp_json=str(self.policy_dir / "mcp.json"),
            claude_md=str(self.policy_dir / INSTRUCTIONS),
            tmp_bytes=self.limits.tmp_mb << 20,
            optional_ro=tuple(p for p in bwrap.OPTIONAL_RO if os.path.exists(p)),
            toolshell=str(self.policy_dir / "toolshell"),
        )

    def _write_plan(self, env: dict[str, str], passthrough: list[str]) -> None:
        mounts = self.mounts()
        command, slots = bwrap.wrapper_command(self.uid, mounts)
        values = rlimits.plan(self.limits)
        plan = {
            "uid": self.uid, "netns": str(self.netns.path), "cgroup_procs": self.cgroup.procs_files,
            "mounts": asdict(mounts), "env": env, "passthrough": passthrough,
            "rlimits": values, "rlimits_exec": rlimits.for_exec(values),
            # What the wrapper execs, built here once (it runs on every CLI start: cliwrap.py).
            "command": command, "fd_slots": slots, "program": bwrap.INSIDE_CLI,
            "etc": {name: data.decode() for name, data in bwrap.etc_files(self.uid).items()},
        }
        for path, data in ((self.wrapper_plan_path, marshal.dumps(plan)), (self.plan_path, json.dumps(plan).encode())):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            tmp.replace(path)

    def _unbind(self) -> None:
        for name in ("workspace", "home"):
            if os.path.ismount(self.root / name):
                syscalls.umount(str(self.root / name))

    def _step(self, step: Callable[[], object]) -> object:
        """One teardown step; what it returned, or None when it raised (logged)."""
        try:
            return step()
        except Exception:
            log.exception("sandbox %s: teardown step %s failed", self.sandbox_id, getattr(step, "__name__", step))
            return None

    def teardown(self) -> None:
        """Kill what is left, remove cgroups and netns, unmount, free the uid. Never raises.

        Under load a killed group's processes can take seconds to leave it (v1 accounting
        lags): a group still busy after the first pass is retried, for up to
        ``BUSY_GROUP_RETRY_S`` more, once the other steps are done (on the teardown worker, so
        nobody waits on it but :meth:`IsolatingLauncher.settled`)."""
        if self._boost is not None:
            self._boost.cancel()
        removed = self._step(self.cgroup.remove)
        for step in (self.netns.delete, self._unbind, self.disk.umount):
            self._step(step)
        if removed is False and self.cgroup.remove(timeout_s=BUSY_GROUP_RETRY_S):
            log.info("sandbox %s: its busy cgroups were removed on the second try", self.sandbox_id)
        try:
            if self.run_dir.exists():
                shutil.rmtree(self.policy_dir, ignore_errors=True)
                for leftover in (self.disk.mountpoint,):
                    if leftover.exists() and not os.path.ismount(leftover):
                        leftover.rmdir()
                self.run_dir.rmdir()
        except OSError as exc:
            log.warning("sandbox %s: %s left behind: %s", self.sandbox_id, self.run_dir, exc)
        self._uids.release(self.sandbox_id)

"""Pure: limits and egress policy parsing and merging (config, agent file, session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ashd.config import SandboxConfig
from ashd.errors import BadRequest
from ashd.limit_fields import Limits, parse_limits
from ashd.sandbox import isolation
from ashd.sandbox.cgroups import CgroupLayout
from ashd.sandbox.limits import AGENT_POLICY_FILE, agent_policy, parse_egress, policy_for
from ashd.sandbox.uids import UidPool


def _agent(tmp_path: Path, doc: object) -> Path:
    (tmp_path / ".ashd").mkdir()
    (tmp_path / AGENT_POLICY_FILE).write_text(json.dumps(doc))
    return tmp_path


def test_defaults_then_agent_then_session(tmp_path: Path) -> None:
    agent = _agent(tmp_path, {"limits": {"memoryMb": 2048, "pids": 300}, "egress": {"allow": ["api.github.com"]},
                              "maxBudgetUsd": 5})
    policy = policy_for(SandboxConfig(), agent, {"limits": {"pids": 100}, "max_budget_usd": 1.5})
    assert policy.limits == Limits(memory_mb=2048, cpus=1.0, pids=100, disk_mb=2048, tmp_mb=256)
    assert policy.egress_allow == ("api.github.com",) and policy.max_budget_usd == 1.5


def test_session_cannot_raise_above_its_agent(tmp_path: Path) -> None:
    agent = _agent(tmp_path, {"limits": {"memoryMb": 512}, "maxBudgetUsd": 1})
    with pytest.raises(BadRequest, match=r"limits\.memoryMb"):
        policy_for(SandboxConfig(), agent, {"limits": {"memoryMb": 1024}})
    with pytest.raises(BadRequest, match="maxBudgetUsd"):
        policy_for(SandboxConfig(), agent, {"max_budget_usd": 2})


def test_agent_cannot_exceed_the_ceiling(tmp_path: Path) -> None:
    agent = _agent(tmp_path, {"limits": {"memoryMb": 999999}})
    with pytest.raises(BadRequest, match=r"\.ashd/sandbox.json: limits.memoryMb"):
        policy_for(SandboxConfig(), agent, None)


@pytest.mark.parametrize("raw", [{"memoryMb": 10}, {"memory": 512}, {"pids": "many"}, {"cpus": True}, [1]])
def test_bad_limits_name_the_field(raw: object) -> None:
    with pytest.raises(BadRequest, match="limits"):
        parse_limits(raw, "limits")


@pytest.mark.parametrize("raw", [["10.0.0.1"], ["http://x.com"], ["a..b"], "x.com"])
def test_bad_egress_entries(raw: object) -> None:
    with pytest.raises(BadRequest):
        parse_egress(raw, "egress.allow")


def test_symlinked_policy_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text(json.dumps({"egress": {"allow": ["x.com"]}}))
    (tmp_path / ".ashd").mkdir()
    (tmp_path / AGENT_POLICY_FILE).symlink_to(tmp_path / "real.json")
    assert agent_policy(tmp_path).egress_allow == ()


def test_uid_pool_keeps_a_sandbox_uid_and_never_shares(tmp_path: Path) -> None:
    pool = UidPool(300_000, 2, tmp_path / "locks")
    a = pool.acquire("a", tmp_path / "a-uid")
    b = pool.acquire("b", tmp_path / "b-uid")
    assert a != b
    pool.release("a")
    assert pool.acquire("a", tmp_path / "a-uid") == a
    with pytest.raises(Exception, match="in use"):
        pool.acquire("c", tmp_path / "c-uid")


def _probe(**over: object) -> isolation.Probe:
    base = dict(root=True, bwrap="0.8.0", setpriv=True, userns_ok=True, userns_error="",
                cgroup=CgroupLayout("v1", {}), mkfs=True, loop=True)
    base.update(over)
    return isolation.Probe(**base)  # type: ignore[arg-type]


def test_floor_met_on_a_full_host() -> None:
    report = isolation.assess(_probe(), "bwrap", "bwrap,limits,proxy")
    assert report.meets_floor and report.to_json()["layers"]["limits"]["cgroup"] == "v1"


def test_below_the_floor_says_what_to_install() -> None:
    report = isolation.assess(_probe(bwrap="", userns_ok=False, cgroup=CgroupLayout("none", {}, "no cgroups")),
                              "bwrap", "bwrap,limits,proxy")
    assert report.missing == ("bwrap", "limits")
    assert "apt-get install bubblewrap" in report.refusal() and "Delegate=yes" in report.refusal()


def test_opting_out_is_below_the_default_floor() -> None:
    assert isolation.assess(_probe(), "none", "bwrap,limits,proxy").missing == ("bwrap", "limits", "proxy")
    assert isolation.assess(_probe(), "none", "none").meets_floor


def test_uid_pools_of_two_daemons_never_hand_out_the_same_uid(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    first, second = UidPool(300_100, 2, locks), UidPool(300_100, 2, locks)
    a = first.acquire("a", tmp_path / "a-uid")
    b = second.acquire("b", tmp_path / "b-uid")
    assert a != b  # the second daemon skipped the uid the first one holds
    with pytest.raises(Exception, match="in use"):
        second.acquire("c", tmp_path / "c-uid")
    first.release("a")
    assert second.acquire("c", tmp_path / "c-uid") == a  # freed host-wide on release


def test_rlimits_bound_the_tasks_of_the_sandbox_uid() -> None:
    """Set as root, then the uid drop (as the CLI wrapper does): a fork loop hits the limit."""
    import subprocess
    import sys

    from ashd.limit_fields import Limits
    from ashd.sandbox import bwrap as bw
    from ashd.sandbox import rlimits

    values = rlimits.plan(Limits(512, 1.0, 8, 64, 16))
    assert values == {"nproc": 8, "core": 0}
    assert "nproc" not in rlimits.plan(Limits(512, 1.0, None, 64, 16))  # type: ignore[arg-type]
    loop = ("import os\nn=0\ntry:\n    while n < 50:\n        if os.fork() == 0:\n"
            "            import time; time.sleep(5)\n            os._exit(0)\n        n += 1\n"
            "except BlockingIOError:\n    pass\nprint('forked', n)")
    run = subprocess.run([*bw.setpriv_argv(300_777), sys.executable, "-c", loop], capture_output=True, text=True,
                         preexec_fn=lambda: rlimits.apply(values), timeout=60)
    assert run.returncode == 0, run.stderr
    assert 0 < int(run.stdout.split()[-1]) < 8  # stopped by RLIMIT_NPROC, not by the loop's own bound

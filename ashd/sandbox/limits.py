"""Resource limits and egress policy of one sandbox (pure: parsing and merging, no I/O but one read).

Three sources, the narrowest wins field by field:

1. ashd's ``[sandbox]`` config: the defaults and the ceilings (``max_*``);
2. the agent folder's ``.ashd/sandbox.json`` (read from the *deployed* folder, never from the
   workspace copy the agent can edit)::

       {"limits": {"memoryMb": 1024, "cpus": 1.0, "pids": 256, "diskMb": 2048, "tmpMb": 128},
        "egress": {"allow": ["api.github.com", "*.pypi.org"]},
        "maxBudgetUsd": 5.0}

3. the session request: ``POST /api/sessions`` fields ``limits`` (same keys as above) and
   ``maxBudgetUsd``. A session may only lower what its agent allows.

Every parse error is a :class:`BadRequest` naming the field. The request fields (``limits``,
``maxBudgetUsd``) are parsed by the pure core (``ashd/limit_fields.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ashd.config import SandboxConfig
from ashd.errors import BadRequest
from ashd.files.agent_folder import agent_tree, read_small
from ashd.limit_fields import Limits, parse_budget, parse_limits

AGENT_POLICY_FILE = ".ashd/sandbox.json"
MAX_POLICY_BYTES = 64 * 1024
MAX_EGRESS_DOMAINS = 200
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

@dataclass(frozen=True)
class SandboxPolicy:
    """What one sandbox may use: the effective limits, the egress allowlist and the budget."""

    limits: Limits = field(default_factory=Limits)
    egress_allow: tuple[str, ...] = ()
    max_budget_usd: float | None = None


def parse_egress(raw: object, where: str) -> tuple[str, ...]:
    """A list of domains; ``*.example.com`` allows subdomains (not example.com itself)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_EGRESS_DOMAINS:
        raise BadRequest(f"{where} must be a list of at most {MAX_EGRESS_DOMAINS} domain names")
    out = []
    for i, name in enumerate(raw):
        if (not isinstance(name, str) or not _DOMAIN.match(name.lower()) or len(name) > 253
                or name.rsplit(".", 1)[-1].isdigit()):
            raise BadRequest(f"{where}[{i}] is not a domain name (IP addresses are not accepted)")
        out.append(name.lower())
    return tuple(out)


def agent_policy(agent_dir: Path) -> SandboxPolicy:
    """Read ``.ashd/sandbox.json`` of a deployed agent folder (absent: empty policy).

    Raises BadRequest naming the file when it is not valid; never follows a symlink.
    """
    where = AGENT_POLICY_FILE
    try:
        data = read_small(agent_tree(agent_dir), tuple(where.split("/")), MAX_POLICY_BYTES)
        if data is None:
            return SandboxPolicy()
        doc = json.loads(data.decode())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{where} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"{where} must hold a JSON object")
    egress = doc.get("egress") or {}
    if not isinstance(egress, dict):
        raise BadRequest(f"{where}: egress must be an object like {{\"allow\": [...]}}")
    return SandboxPolicy(
        limits=parse_limits(doc.get("limits"), f"{where}: limits"),
        egress_allow=parse_egress(egress.get("allow"), f"{where}: egress.allow"),
        max_budget_usd=parse_budget(doc.get("maxBudgetUsd"), f"{where}: maxBudgetUsd"),
    )


def effective(
    defaults: Limits, ceiling: Limits, agent: SandboxPolicy, session: Limits, session_budget: float | None,
) -> SandboxPolicy:
    """Merge config defaults, agent policy and session request; the session may only lower."""
    agent_limits = agent.limits.capped(ceiling, AGENT_POLICY_FILE + ": limits")
    allowed = agent_limits.over(ceiling)
    limits = session.capped(allowed, "limits").over(agent_limits.over(defaults))
    budget = agent.max_budget_usd
    if session_budget is not None:
        if budget is not None and session_budget > budget:
            raise BadRequest(f"maxBudgetUsd is {session_budget}, above the agent's {budget}")
        budget = session_budget
    return replace(agent, limits=limits, max_budget_usd=budget)


def policy_for(sandbox: SandboxConfig, agent_dir: Path, session_config: dict[str, Any] | None) -> SandboxPolicy:
    """The policy of one session's sandbox: config, then the agent's file, then the session.

    ``session_config`` is the stored session config; its ``limits`` (the request's ``limits``
    object) and ``max_budget_usd`` (the request's ``maxBudgetUsd``) are read if present.
    """
    sb = sandbox
    defaults = Limits(sb.memory_mb, sb.cpus, sb.pids, sb.disk_mb, sb.tmp_mb)
    ceiling = Limits(sb.max_memory_mb, sb.max_cpus, sb.max_pids, sb.max_disk_mb, sb.max_tmp_mb)
    raw = session_config or {}
    return effective(defaults, ceiling, agent_policy(agent_dir),
                     parse_limits(raw.get("limits"), "limits"), parse_budget(raw.get("max_budget_usd"), "maxBudgetUsd"))

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

Every parse error is a :class:`BadRequest` naming the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ashd.config import SandboxConfig
from ashd.errors import BadRequest
from ashd.files.agent_folder import agent_tree, read_small

AGENT_POLICY_FILE = ".ashd/sandbox.json"
MAX_POLICY_BYTES = 64 * 1024
MAX_EGRESS_DOMAINS = 200
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# JSON key -> (attribute, type, minimum). Minimums keep the CLI alive (it needs ~200 MB).
_LIMIT_KEYS: dict[str, tuple[str, type, float]] = {
    "memoryMb": ("memory_mb", int, 192),
    "cpus": ("cpus", float, 0.05),
    "pids": ("pids", int, 32),
    "diskMb": ("disk_mb", int, 16),
    "tmpMb": ("tmp_mb", int, 1),
}


@dataclass(frozen=True)
class Limits:
    """Resource limits; ``None`` means "not set at this level"."""

    memory_mb: int | None = None
    cpus: float | None = None
    pids: int | None = None
    disk_mb: int | None = None
    tmp_mb: int | None = None

    def over(self, base: Limits) -> Limits:
        """Fields set here replace those of ``base``."""
        return Limits(**{k: v if v is not None else getattr(base, k) for k, v in asdict(self).items()})

    def capped(self, ceiling: Limits, where: str) -> Limits:
        """Raise BadRequest if a field exceeds the ceiling's."""
        for key, (attr, _, _) in _LIMIT_KEYS.items():
            mine, cap = getattr(self, attr), getattr(ceiling, attr)
            if mine is not None and cap is not None and mine > cap:
                raise BadRequest(f"{where}.{key} is {mine}, above the allowed {cap}")
        return self

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, a) for k, (a, _, _) in _LIMIT_KEYS.items() if getattr(self, a) is not None}


@dataclass(frozen=True)
class SandboxPolicy:
    """What one sandbox may use: the effective limits, the egress allowlist and the budget."""

    limits: Limits = field(default_factory=Limits)
    egress_allow: tuple[str, ...] = ()
    max_budget_usd: float | None = None


def parse_limits(raw: object, where: str) -> Limits:
    """``{"memoryMb": 512, ...}`` -> Limits. Unknown keys and bad values raise BadRequest."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object with {', '.join(_LIMIT_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _LIMIT_KEYS:
            raise BadRequest(f"{where}.{key} is not a known limit ({', '.join(_LIMIT_KEYS)})")
        attr, kind, minimum = _LIMIT_KEYS[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or value == int(value))
        if not ok or value < minimum:
            raise BadRequest(f"{where}.{key} must be a number of at least {minimum:g}")
        values[attr] = kind(value)
    return Limits(**values)


def parse_budget(raw: object, where: str) -> float | None:
    if raw is None:
        return None
    if not isinstance(raw, int | float) or isinstance(raw, bool) or raw <= 0:
        raise BadRequest(f"{where} must be a positive number of US dollars")
    return float(raw)


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


def session_request(body: dict[str, Any]) -> tuple[Limits, float | None]:
    """The session request's ``limits`` and ``maxBudgetUsd`` fields (validated)."""
    return parse_limits(body.get("limits"), "limits"), parse_budget(body.get("maxBudgetUsd"), "maxBudgetUsd")


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

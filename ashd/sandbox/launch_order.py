"""A sandbox launch by value: what a coordinator sends a runner to start one sandbox.

A :class:`~ashd.sandbox.launcher.SandboxSpec` is full of this host's facts (paths, a socket,
a callable that reads the database). A :class:`LaunchOrder` carries none of them: the agent
by its version key (the runner keeps a cache of agent folders by that key), the bridge
settings without paths, the user's part of the environment (never a model credential), the
policy, the session's stored upstream key if it has one (for the runner's model proxy only),
what the session already spent (so the runner's model proxy holds it to its ``maxBudgetUsd``),
and the conversation to restore, read from the database here because the runner has no
database. :func:`order_of` builds one on the coordinator (blocking: it reads the transcript);
:func:`spec_of` turns one into a spec on the runner. Pure apart from that read; any thread.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ashd.config import Secret
from ashd.errors import SandboxFailed
from ashd.limit_fields import Limits
from ashd.sandbox import resume
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launcher import SandboxSpec
from ashd.sandbox.limits import SandboxPolicy
from ashd.store import StoreError
from ashd.user_env import RESERVED_NAMES, RESERVED_PREFIXES
from ashd.wire.settings import BridgeSettings

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOST_FIELDS = ("socket_path", "workspace", "cli_path", "cli_config_dir", "cli_cwd")

Transcripts = dict[str, dict[str, list[str]]]
"""session id -> transcript subpath ("" for the main one) -> stored lines."""


def check_key(value: object, what: str) -> str:
    """An id safe as one path component (no separators, no dot-dot, no leading dot)."""
    if not isinstance(value, str) or not _KEY.match(value) or ".." in value:
        raise SandboxFailed(f"{what} {value!r} is not a valid id")
    return value


@dataclass(frozen=True)
class LaunchOrder:
    sandbox_id: str
    session_id: str
    tenant_id: str
    agent_name: str
    agent_key: str  # "<agent id>.<version>": immutable, so a runner caches the folder by it
    settings: dict[str, Any] = field(hash=False)  # BridgeSettings fields without host paths
    user_env: dict[str, str] = field(hash=False)
    policy: dict[str, Any] = field(hash=False)
    parent_id: str | None = None
    transcripts: Transcripts = field(default_factory=dict, hash=False)
    upstream_key: str | None = field(default=None, repr=False)
    spent_usd: float = 0.0  # the session's recorded cost before this launch
    # The session's last sandbox ran on another runner (or none ran): whatever copy of its
    # sandbox folder this runner kept from an earlier stint (say, before a partition moved the
    # session away) is stale. The runner discards it: files from the snapshot, conversation
    # from ``transcripts``.
    fresh: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LaunchOrder:
        """Raises SandboxFailed for a malformed order (ids are checked as path components)."""
        try:
            order = cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})
        except TypeError as exc:
            raise SandboxFailed(f"malformed launch order: {exc}") from None
        for name in ("sandbox_id", "session_id", "tenant_id", "agent_key"):
            check_key(getattr(order, name), name)
        known = {f.name for f in dataclasses.fields(BridgeSettings)} - set(_HOST_FIELDS)
        if not isinstance(order.settings, dict) or set(order.settings) - known:
            # Paths (the CLI binary, the socket, the workspace) are the runner's alone to choose.
            raise SandboxFailed(f"malformed launch order: settings may only carry {', '.join(sorted(known))}")
        if not all(isinstance(v, str) for v in order.user_env.values()):
            raise SandboxFailed("malformed launch order: user_env values must be strings")
        if isinstance(order.spent_usd, bool) or not isinstance(order.spent_usd, (int, float)) or order.spent_usd < 0:
            raise SandboxFailed("malformed launch order: spent_usd must be a non-negative number")
        if not isinstance(order.fresh, bool):
            raise SandboxFailed("malformed launch order: fresh must be true or false")
        return order


def order_of(spec: SandboxSpec, spent_usd: float = 0.0, fresh: bool = False) -> LaunchOrder:
    """The order for ``spec`` (coordinator side). Blocking: reads the session's (and a fork's
    parent's) transcript from the database. Raises SandboxFailed if it cannot. ``spent_usd``:
    what the session spent so far (the coordinator's usage rows); ``fresh``: the session
    moved to this runner (see :attr:`LaunchOrder.fresh`)."""
    restore = spec.restore_transcript
    parent = restore.parent_id if isinstance(restore, resume.TranscriptRestore) else None
    try:
        transcripts = _read_transcripts(restore) if isinstance(restore, resume.TranscriptRestore) else {}
    except StoreError as exc:
        raise SandboxFailed(f"cannot read the session's conversation from the database: {exc}") from exc
    settings = {k: v for k, v in asdict(spec.settings).items() if k not in _HOST_FIELDS}
    return LaunchOrder(
        spec.sandbox_id, spec.session_id, spec.tenant_id, spec.agent_name, spec.agent_key, settings,
        _users_part(spec.env), asdict(spec.policy), parent, transcripts,
        spec.upstream_key.reveal() if spec.upstream_key is not None else None, spent_usd, fresh)


def _users_part(env: Mapping[str, str]) -> dict[str, str]:
    """The agent's and session's variables: no reserved name (the model key, HOME, PATH...) and
    none that the runner's own :func:`sandbox_env` sets."""
    owned = set(sandbox_env(home="", model_base_url="", model_key="", model_auth_token="", user_env={}))
    return {k: v for k, v in env.items()
            if k not in RESERVED_NAMES and k not in owned and not k.startswith(RESERVED_PREFIXES)}


def _read_transcripts(restore: resume.TranscriptRestore) -> Transcripts:
    out: Transcripts = {}
    for sid in filter(None, (restore.session_id, restore.parent_id)):
        store = restore.store
        out[sid] = {"": store.load_transcript(restore.tenant_id, sid)}
        for sub in store.transcript_subpaths(restore.tenant_id, sid):
            out[sid][sub] = store.load_transcript(restore.tenant_id, sid, sub)
    return out


@dataclass(frozen=True)
class Shipped:
    """The transcripts an order carried, answering like the store does (resume.TranscriptSource)."""

    transcripts: Transcripts

    def load_transcript(self, tenant_id: str, session_id: str, subpath: str = "") -> list[str]:
        return list(self.transcripts.get(session_id, {}).get(subpath, []))

    def transcript_subpaths(self, tenant_id: str, session_id: str) -> list[str]:
        return sorted(s for s in self.transcripts.get(session_id, {}) if s)


@dataclass(frozen=True)
class RunnerPlaces:
    """Where the runner puts one sandbox, and how it reaches the model."""

    root: Path
    socket_path: Path
    agent_dir: Path
    model_base_url: str
    model_key: str
    model_auth_token: str
    cli_workspace: str | None = None  # the workspace as the CLI sees it, if the launcher remaps it


def spec_of(order: LaunchOrder, places: RunnerPlaces) -> SandboxSpec:
    """The runner's spec for an order: its own paths, its own model endpoint and key."""
    workspace = places.root / "workspace"
    settings = BridgeSettings(**order.settings, socket_path=str(places.socket_path), workspace=str(workspace))
    env = sandbox_env(home=str(places.root / "home"), model_base_url=places.model_base_url,
                      model_key=places.model_key, model_auth_token=places.model_auth_token, user_env=order.user_env)
    policy = order.policy
    restore = resume.TranscriptRestore(Shipped(order.transcripts), order.tenant_id, order.session_id,
                                       order.parent_id, places.cli_workspace or str(workspace))
    return SandboxSpec(
        order.sandbox_id, order.session_id, order.agent_name, order.tenant_id, places.root, places.socket_path, env,
        settings, agent_dir=places.agent_dir, agent_key=order.agent_key,
        policy=SandboxPolicy(Limits(**policy["limits"]), tuple(policy["egress_allow"]), policy["max_budget_usd"]),
        upstream_key=Secret(order.upstream_key) if order.upstream_key else None, restore_transcript=restore,
        spent_usd=float(order.spent_usd))

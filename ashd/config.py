"""ashd configuration: defaults, then a TOML file, then the environment, then flags.

The result is one frozen :class:`Config`; each component receives only its section.
Validation errors name the key and where its value came from. Secrets are wrapped in
:class:`Secret` so they never appear in logs, reprs or ``ashctl config show``.

This module loads (:func:`load`) and shows (:func:`describe`) a configuration; the sections
themselves, each key's default and meaning, are :mod:`ashd.config_sections` and the checks
a loaded one must pass :mod:`ashd.config_checks`. Components import all of it from here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ashd.config_checks import validate
from ashd.config_sections import (
    LOG_LEVELS,
    MODES,
    PERMISSION_MODES,
    AgentsConfig,
    AuthConfig,
    ClusterConfig,
    Config,
    DebugConfig,
    EvalsConfig,
    ModelConfig,
    PoolConfig,
    ProxyConfig,
    QueueConfig,
    RateLimitConfig,
    SandboxConfig,
    Secret,
    ServerConfig,
    SnapshotConfig,
    StoreConfig,
    SupervisionConfig,
    agent_path_roots,
    allowed_origins,
    egress_pins,
    floor_layers,
    start_slots,
)
from ashd.errors import ConfigError

__all__ = [  # the sections live in ashd/config_sections.py; importers use this module
    "ENV_KEYS", "LOG_LEVELS", "MODES", "PERMISSION_MODES", "AgentsConfig", "AuthConfig", "ClusterConfig", "Config",
    "ConfigError", "DebugConfig", "EvalsConfig", "ModelConfig", "PoolConfig", "ProxyConfig", "QueueConfig",
    "RateLimitConfig", "SandboxConfig", "Secret", "ServerConfig", "SnapshotConfig", "StoreConfig",
    "SupervisionConfig", "agent_path_roots", "allowed_origins", "describe", "egress_pins", "floor_layers", "load",
    "mask_url", "start_slots",
]

# (dotted key, environment variable). Ash's names where they exist.
ENV_KEYS: tuple[tuple[str, str], ...] = (
    ("data_dir", "ASH_DATA_DIR"),
    ("log_level", "ASH_LOG_LEVEL"),
    ("server.host", "ASH_HOST"),
    ("server.port", "ASH_PORT"),
    ("store.database_url", "ASH_DATABASE_URL"),
    ("pool.max_sandboxes", "ASH_MAX_SANDBOXES"),
    ("pool.idle_timeout_ms", "ASH_IDLE_TIMEOUT_MS"),
    ("pool.bridge_ready_timeout_s", "ASH_BRIDGE_READY_TIMEOUT_S"),
    ("pool.sweep_interval_s", "ASH_SWEEP_INTERVAL_S"),
    ("pool.sse_heartbeat_s", "ASH_SSE_HEARTBEAT_S"),
    ("pool.prewarm_per_agent", "ASH_PREWARM_PER_AGENT"),
    ("pool.park_after_ms", "ASH_PARK_AFTER_MS"),
    ("pool.max_warm_sessions", "ASH_MAX_WARM_SESSIONS"),
    ("pool.park_below_available_mb", "ASH_PARK_BELOW_AVAILABLE_MB"),
    ("pool.max_concurrent_starts", "ASH_MAX_CONCURRENT_STARTS"),
    ("pool.max_queued_starts", "ASH_MAX_QUEUED_STARTS"),
    ("pool.max_turns_per_tenant", "ASH_MAX_TURNS_PER_TENANT"),
    ("snapshot.url", "ASH_SNAPSHOT_URL"),
    ("snapshot.s3_endpoint", "ASH_S3_ENDPOINT"),
    ("snapshot.s3_region", "ASH_S3_REGION"),
    ("snapshot.max_bytes", "ASH_SNAPSHOT_MAX_BYTES"),
    ("supervision.intensity", "ASH_RESTART_INTENSITY"),
    ("supervision.period_s", "ASH_RESTART_PERIOD_S"),
    ("supervision.backoff_base_s", "ASH_RESTART_BACKOFF_BASE_S"),
    ("supervision.backoff_cap_s", "ASH_RESTART_BACKOFF_CAP_S"),
    ("supervision.min_uptime_s", "ASH_RESTART_MIN_UPTIME_S"),
    ("supervision.budget_limit", "ASH_RESTART_BUDGET"),
    ("supervision.degraded_after_failed_starts", "ASH_DEGRADED_AFTER_FAILED_STARTS"),
    ("supervision.session_actor_idle_s", "ASH_SESSION_ACTOR_IDLE_S"),
    ("model.base_url", "ANTHROPIC_BASE_URL"),
    ("model.api_key", "ANTHROPIC_API_KEY"),
    ("model.auth_token", "ANTHROPIC_AUTH_TOKEN"),
    ("auth.api_key", "ASH_API_KEY"),
    ("auth.credential_key", "ASH_CREDENTIAL_KEY"),
    ("auth.internal_secret", "ASH_INTERNAL_SECRET"),
    ("debug.fault_injection", "ASH_FAULT_INJECTION"),
    ("server.allowed_origins", "ASH_ALLOWED_ORIGINS"),
    ("server.public_health_figures", "ASH_PUBLIC_HEALTH_FIGURES"),
    ("rate_limit.window_s", "ASH_RATE_LIMIT_WINDOW_S"),
    ("rate_limit.global_max", "ASH_RATE_LIMIT_GLOBAL"),
    ("rate_limit.sessions_max", "ASH_RATE_LIMIT_SESSIONS"),
    ("rate_limit.agents_max", "ASH_RATE_LIMIT_AGENTS"),
    ("sandbox.permission_mode", "ASH_PERMISSION_MODE"),
    ("sandbox.isolation", "ASH_SANDBOX_ISOLATION"),
    ("sandbox.floor", "ASH_SANDBOX_FLOOR"),
    ("sandbox.mount_root", "ASH_SANDBOX_MOUNT_ROOT"),
    ("sandbox.zygote", "ASH_SANDBOX_ZYGOTE"),
    ("sandbox.memory_mb", "ASH_SANDBOX_MEMORY_MB"),
    ("sandbox.cpus", "ASH_SANDBOX_CPUS"),
    ("sandbox.start_cpu_boost_s", "ASH_SANDBOX_START_CPU_BOOST_S"),
    ("sandbox.pids", "ASH_SANDBOX_PIDS"),
    ("sandbox.disk_mb", "ASH_SANDBOX_DISK_MB"),
    ("sandbox.tmp_mb", "ASH_SANDBOX_TMP_MB"),
    ("sandbox.disk_reserve_mb", "ASH_DISK_RESERVE_MB"),
    ("sandbox.disk_reserve_percent", "ASH_DISK_RESERVE_PERCENT"),
    ("sandbox.turn_idle_timeout_s", "ASH_TURN_IDLE_TIMEOUT_S"),
    ("proxy.egress_pins", "ASH_EGRESS_PINS"),
    ("proxy.max_connections_per_sandbox", "ASH_PROXY_MAX_CONNECTIONS"),
    ("proxy.idle_timeout_s", "ASH_PROXY_IDLE_TIMEOUT_S"),
    ("proxy.max_request_bytes", "ASH_PROXY_MAX_REQUEST_BYTES"),
    ("proxy.allowed_server_tools", "ASH_PROXY_ALLOWED_SERVER_TOOLS"),
    ("max_attachment_size", "ASH_MAX_ATTACHMENT_SIZE"),
    ("max_session_attachments_size", "ASH_MAX_SESSION_ATTACHMENTS_SIZE"),
    ("queue.workers", "ASH_QUEUE_WORKERS"),
    ("queue.poll_interval_s", "ASH_QUEUE_POLL_INTERVAL_S"),
    ("queue.retry_delay_s", "ASH_QUEUE_RETRY_DELAY_S"),
    ("queue.retry_delay_cap_s", "ASH_QUEUE_RETRY_DELAY_CAP_S"),
    ("queue.max_waiting_per_tenant", "ASH_QUEUE_MAX_WAITING"),
    ("queue.keep_finished_s", "ASH_QUEUE_KEEP_FINISHED_S"),
    ("evals.concurrency", "ASH_EVAL_CONCURRENCY"),
    ("evals.grader_model", "ASH_EVAL_GRADER_MODEL"),
    ("evals.grader_timeout_s", "ASH_EVAL_GRADER_TIMEOUT_S"),
    ("agents.path_roots", "ASH_AGENT_PATH_ROOTS"),
    ("agents.max_per_tenant", "ASH_MAX_AGENTS"),
    ("server.mode", "ASH_MODE"),
    ("cluster.runner_id", "ASH_RUNNER_ID"),
    ("cluster.runner_host", "ASH_RUNNER_HOST"),
    ("cluster.runner_port", "ASH_RUNNER_PORT"),
    ("cluster.runner_advertise_host", "ASH_RUNNER_ADVERTISE_HOST"),
    ("cluster.server_url", "ASH_SERVER_URL"),
    ("cluster.heartbeat_interval_s", "ASH_RUNNER_HEARTBEAT_S"),
    ("cluster.liveness_timeout_s", "ASH_RUNNER_LIVENESS_TIMEOUT_S"),
)


def load(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the frozen config. Raises ConfigError naming the bad key and its source.

    Every path setting comes back absolute, resolved once against the current directory
    (the one ashd was started in), so nothing later depends on a process's cwd: the bridge,
    for one, runs in its workspace.
    """
    cwd = Path.cwd()
    values: dict[str, tuple[Any, str]] = {}
    if file is not None:
        file = (cwd / file.expanduser()).resolve()
        for key, value in _read_toml(file).items():
            values[key] = (value, str(file))
    environ = os.environ if env is None else env
    for key, var in ENV_KEYS:
        if var in environ and environ[var] != "":
            values[key] = (environ[var], f"${var}")
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = (value, f"--{key.split('.')[-1].replace('_', '-')}")
    config = _anchored(_build(values), cwd)
    validate(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}.{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def _build(values: dict[str, tuple[Any, str]]) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    known = _sections()
    for key, (raw, source) in values.items():
        section, _, name = key.rpartition(".")
        owner: Any = Config
        if section:
            if section not in known:
                raise ConfigError(f"unknown config section [{section}] (from {source})")
            owner = known[section]
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}' (from {source})")
        value = _coerce(key, raw, fields[name], source)
        (sections.setdefault(section, {}) if section else top)[name] = value
    for section, kwargs in sections.items():
        top[section] = known[section](**kwargs)
    return Config(**top)


def _anchored(config: Config, cwd: Path) -> Config:
    """``config`` with every path setting absolute: Path fields, a SQLite file, a snapshot dir."""

    def fix(obj: Any) -> Any:
        changes: dict[str, Any] = {}
        for spec in dataclasses.fields(obj):
            value = getattr(obj, spec.name)
            if isinstance(value, Path):
                changes[spec.name] = (cwd / value.expanduser()).resolve()
            elif dataclasses.is_dataclass(value):
                changes[spec.name] = fix(value)
        return dataclasses.replace(obj, **changes)

    config = fix(config)
    store = dataclasses.replace(config.store, database_url=_anchored_sqlite_url(config.store.database_url, cwd))
    snapshot = dataclasses.replace(config.snapshot, url=_anchored_snapshot_url(config.snapshot.url, cwd))
    return dataclasses.replace(config, store=store, snapshot=snapshot)


def _anchored_sqlite_url(url: str, cwd: Path) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db``; any other URL (and :memory:) as is."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+")[0] != "sqlite":
        return url
    path, query_sep, query = rest.partition("?")
    if not path or path.startswith(("/", "file:")) or path == ":memory:":
        return url
    return f"{scheme}:///{(cwd / Path(path).expanduser()).resolve()}{query_sep}{query}"


def _anchored_snapshot_url(url: str, cwd: Path) -> str:
    """A directory given as a plain path or ``file:rel`` -> its ``file:///abs/dir`` URL."""
    if not url:
        return url
    parsed = urlparse(url)
    if not parsed.scheme:  # a plain path, absolute or relative
        path = url
    elif parsed.scheme == "file" and not parsed.netloc and not parsed.path.startswith("/"):
        path = unquote(parsed.path)
    else:
        return url
    return (cwd / Path(path).expanduser()).resolve().as_uri()


def _sections() -> dict[str, Any]:
    """Section name -> its dataclass, read off Config's own fields (one list, not two)."""
    return {f.name: f.default_factory for f in dataclasses.fields(Config)
            if dataclasses.is_dataclass(f.default_factory)}


def _coerce(key: str, raw: Any, spec: dataclasses.Field[Any], source: str) -> Any:
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
    if kind == "bool":
        return _boolean(key, raw, source)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return _finite(key, float(raw), source)
        if kind == "Path":
            return Path(str(raw)).expanduser()
        if kind == "Secret":
            return Secret(str(raw))
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' must be {kind}, got {raw!r} (from {source})") from None


def _finite(key: str, value: float, source: str) -> float:
    if not math.isfinite(value):  # nan passes every range check after it
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r} (from {source})")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(key: str, raw: Any, source: str) -> bool:
    """A TOML boolean, or one of the words of _TRUE / _FALSE (any case) from env or flags."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigError(f"config key '{key}' must be true or false (or 1/0, yes/no, on/off), "
                      f"got {raw!r} (from {source})")


def describe(config: Config) -> dict[str, Any]:
    """A JSON-able view of the config with secrets masked (for logs and `config show`)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return "***" if value else ""
        if isinstance(value, Path):
            return str(value)
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return value

    out = plain(config)
    out["store"]["database_url"] = mask_url(config.database_url)
    return out


def mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"

"""ashd configuration: defaults, then a TOML file, then the environment, then flags.

The result is one frozen :class:`Config`; each component receives only its section.
Validation errors name the key and where its value came from. Secrets are wrapped in
:class:`Secret` so they never appear in logs, reprs or ``ashctl config show``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ashd.errors import ConfigError


class Secret:
    """A string that masks itself when printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4100
    allowed_origins: str = ""  # CORS: comma list of origins to reflect; empty = no CORS headers at all


@dataclass(frozen=True)
class StoreConfig:
    # Empty: a SQLite file under the data dir. Kept out of repr: the URL may hold a password.
    database_url: str = field(default="", repr=False)


@dataclass(frozen=True)
class PoolConfig:
    max_sandboxes: int = 1000
    idle_timeout_ms: int = 1_800_000
    bridge_ready_timeout_s: float = 30.0
    stop_grace_s: float = 5.0
    sweep_interval_s: float = 60.0
    sse_heartbeat_s: float = 15.0  # a ": keep-alive" comment on a stream idle this long
    prewarm_per_agent: int = 0  # default pre-warmed sandboxes per agent (agent config preWarmCount wins)


@dataclass(frozen=True)
class SnapshotConfig:
    """Where workspace snapshots go: unset = <data>/snapshots; file:///dir; s3://bucket/prefix/."""

    url: str = ""
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class SupervisionConfig:
    """Restart policy of agent processes (see ashd/policy.py)."""

    intensity: int = 3
    period_s: float = 60.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0
    min_uptime_s: float = 1.0
    stable_after_s: float = 60.0
    budget_limit: int = 10
    budget_period_s: float = 60.0
    # /health says "degraded" once this many sandbox starts in a row have failed (docs/operations.md).
    degraded_after_failed_starts: int = 3


@dataclass(frozen=True)
class ModelConfig:
    """Where the real model API is, and the credential ashd uses for it."""

    base_url: str = "https://api.anthropic.com"
    api_key: Secret = field(default_factory=lambda: Secret(""))
    auth_token: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class AuthConfig:
    api_key: Secret = field(default_factory=lambda: Secret(""))
    credential_key: Secret = field(default_factory=lambda: Secret(""))
    # Guards /api/internal/*; empty = those routes are disabled (fail closed, unlike Ash).
    internal_secret: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class RateLimitConfig:
    """Token buckets per API key (per client address without one); 0 disables a limit."""

    window_s: float = 900.0
    global_max: int = 1500  # requests per window, any route
    sessions_max: int = 20  # POST /api/sessions per window
    agents_max: int = 20  # POST /api/agents per window


@dataclass(frozen=True)
class SandboxConfig:
    """How sessions are isolated (docs/security.md). Limits: defaults, then ceilings (max_*)."""

    permission_mode: str = "bypassPermissions"
    isolation: str = "bwrap"  # "bwrap" (default) or "none" (no OS isolation: an explicit opt-out)
    floor: str = "bwrap,limits,proxy"  # layers without which no session starts ("none": no floor)
    mount_root: Path = Path("/run/ashd")  # host paths the sandbox uids must reach
    uid_base: int = 200_000
    uid_count: int = 65_000
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 512
    disk_mb: int = 2048
    tmp_mb: int = 256
    max_memory_mb: int = 8192
    max_cpus: float = 4.0
    max_pids: int = 4096
    max_disk_mb: int = 20480
    max_tmp_mb: int = 4096


@dataclass(frozen=True)
class ProxyConfig:
    """The model proxy and the egress proxy, as seen from inside a sandbox."""

    model_port: int = 8080
    egress_port: int = 3128
    egress_pins: str = ""  # "name=ip,name2=ip2": trusted fixed addresses for allowlisted names


@dataclass(frozen=True)
class QueueConfig:
    """The prompt queue's worker (POST /api/queue; ashd/http/queue_worker.py)."""

    workers: int = 1  # queued turns this daemon runs at once; 0: it runs none (others may)
    poll_interval_s: float = 1.0  # how often an idle worker looks for due items
    retry_delay_s: float = 5.0  # delay before the first retry; doubles with each retry
    retry_delay_cap_s: float = 300.0


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("data")
    log_level: str = "info"
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    max_attachment_size: int = 10 * 1024 * 1024  # bytes, decoded (ASH_MAX_ATTACHMENT_SIZE)

    @property
    def database_url(self) -> str:
        return self.store.database_url or f"sqlite:///{self.data_dir / 'ash.db'}"


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
    ("model.base_url", "ANTHROPIC_BASE_URL"),
    ("model.api_key", "ANTHROPIC_API_KEY"),
    ("model.auth_token", "ANTHROPIC_AUTH_TOKEN"),
    ("auth.api_key", "ASH_API_KEY"),
    ("auth.credential_key", "ASH_CREDENTIAL_KEY"),
    ("auth.internal_secret", "ASH_INTERNAL_SECRET"),
    ("server.allowed_origins", "ASH_ALLOWED_ORIGINS"),
    ("rate_limit.window_s", "ASH_RATE_LIMIT_WINDOW_S"),
    ("rate_limit.global_max", "ASH_RATE_LIMIT_GLOBAL"),
    ("rate_limit.sessions_max", "ASH_RATE_LIMIT_SESSIONS"),
    ("rate_limit.agents_max", "ASH_RATE_LIMIT_AGENTS"),
    ("sandbox.permission_mode", "ASH_PERMISSION_MODE"),
    ("sandbox.isolation", "ASH_SANDBOX_ISOLATION"),
    ("sandbox.floor", "ASH_SANDBOX_FLOOR"),
    ("sandbox.mount_root", "ASH_SANDBOX_MOUNT_ROOT"),
    ("sandbox.memory_mb", "ASH_SANDBOX_MEMORY_MB"),
    ("sandbox.cpus", "ASH_SANDBOX_CPUS"),
    ("sandbox.pids", "ASH_SANDBOX_PIDS"),
    ("sandbox.disk_mb", "ASH_SANDBOX_DISK_MB"),
    ("sandbox.tmp_mb", "ASH_SANDBOX_TMP_MB"),
    ("proxy.egress_pins", "ASH_EGRESS_PINS"),
    ("max_attachment_size", "ASH_MAX_ATTACHMENT_SIZE"),
    ("queue.workers", "ASH_QUEUE_WORKERS"),
    ("queue.poll_interval_s", "ASH_QUEUE_POLL_INTERVAL_S"),
    ("queue.retry_delay_s", "ASH_QUEUE_RETRY_DELAY_S"),
    ("queue.retry_delay_cap_s", "ASH_QUEUE_RETRY_DELAY_CAP_S"),
)

ISOLATION_MODES = ("bwrap", "none")
ISOLATION_LAYERS = ("bwrap", "uid", "limits", "netns", "proxy", "egress", "quota")

PERMISSION_MODES = ("bypassPermissions", "default", "acceptEdits", "plan")
LOG_LEVELS = ("debug", "info", "warning", "error")


def load(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the frozen config. Raises ConfigError naming the bad key and its source."""
    values: dict[str, tuple[Any, str]] = {}
    if file is not None:
        for key, value in _read_toml(file).items():
            values[key] = (value, str(file))
    environ = os.environ if env is None else env
    for key, var in ENV_KEYS:
        if var in environ and environ[var] != "":
            values[key] = (environ[var], f"${var}")
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = (value, f"--{key.split('.')[-1].replace('_', '-')}")
    config = _build(values)
    _validate(config)
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


def _sections() -> dict[str, Any]:
    """Section name -> its dataclass, read off Config's own fields (one list, not two)."""
    return {f.name: f.default_factory for f in dataclasses.fields(Config)
            if dataclasses.is_dataclass(f.default_factory)}


def _coerce(key: str, raw: Any, spec: dataclasses.Field[Any], source: str) -> Any:
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(str(raw)).expanduser()
        if kind == "Secret":
            return Secret(str(raw))
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' must be {kind}, got {raw!r} (from {source})") from None


def _validate(config: Config) -> None:
    if not 0 <= config.server.port <= 65535:
        raise ConfigError(f"server.port must be 0..65535, got {config.server.port}")
    if config.pool.max_sandboxes < 1:
        raise ConfigError("pool.max_sandboxes (ASH_MAX_SANDBOXES) must be at least 1")
    if config.pool.idle_timeout_ms < 1000:
        raise ConfigError("pool.idle_timeout_ms (ASH_IDLE_TIMEOUT_MS) must be at least 1000")
    if config.sandbox.permission_mode not in PERMISSION_MODES:
        raise ConfigError(
            f"sandbox.permission_mode must be one of {', '.join(PERMISSION_MODES)}, "
            f"got {config.sandbox.permission_mode!r}"
        )
    if config.supervision.degraded_after_failed_starts < 1:
        raise ConfigError("supervision.degraded_after_failed_starts (ASH_DEGRADED_AFTER_FAILED_STARTS) "
                          "must be at least 1")
    _validate_sandbox(config.sandbox, config.proxy)
    _validate_queue(config.queue)
    _validate_rate_limit(config.rate_limit)
    if config.max_attachment_size < 1:
        raise ConfigError("max_attachment_size (ASH_MAX_ATTACHMENT_SIZE) must be at least 1 byte")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if not config.model.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"model.base_url (ANTHROPIC_BASE_URL) must be an http(s) URL, got {config.model.base_url!r}")


def _validate_sandbox(sb: SandboxConfig, proxy: ProxyConfig) -> None:
    if sb.isolation not in ISOLATION_MODES:
        raise ConfigError(f"sandbox.isolation (ASH_SANDBOX_ISOLATION) must be one of {', '.join(ISOLATION_MODES)}")
    for layer in floor_layers(sb.floor):
        if layer not in ISOLATION_LAYERS:
            raise ConfigError(f"sandbox.floor (ASH_SANDBOX_FLOOR): unknown layer {layer!r}; "
                              f"known: {', '.join(ISOLATION_LAYERS)}")
    if sb.uid_base < 1000 or sb.uid_count < 1:
        raise ConfigError("sandbox.uid_base must be >= 1000 and sandbox.uid_count >= 1")
    for name, minimum in (("memory_mb", 192), ("pids", 32), ("disk_mb", 16), ("tmp_mb", 1)):
        value, cap = getattr(sb, name), getattr(sb, "max_" + name)
        if not minimum <= value <= cap:
            raise ConfigError(f"sandbox.{name} must be between {minimum} and sandbox.max_{name} ({cap}), got {value}")
    if not 0.05 <= sb.cpus <= sb.max_cpus:
        raise ConfigError(f"sandbox.cpus must be between 0.05 and sandbox.max_cpus ({sb.max_cpus})")
    for name in ("model_port", "egress_port"):
        if not 1 <= getattr(proxy, name) <= 65535:
            raise ConfigError(f"proxy.{name} must be 1..65535")
    for pin in filter(None, (p.strip() for p in proxy.egress_pins.split(","))):
        host, sep, addr = pin.partition("=")
        if not sep or not host or not addr:
            raise ConfigError(f"proxy.egress_pins (ASH_EGRESS_PINS): {pin!r} is not name=address")


def _validate_rate_limit(rl: RateLimitConfig) -> None:
    if not rl.window_s > 0:
        raise ConfigError(f"rate_limit.window_s (ASH_RATE_LIMIT_WINDOW_S) must be > 0 seconds, got {rl.window_s}")
    for name, var in (("global_max", "GLOBAL"), ("sessions_max", "SESSIONS"), ("agents_max", "AGENTS")):
        if getattr(rl, name) < 0:
            raise ConfigError(f"rate_limit.{name} (ASH_RATE_LIMIT_{var}) must be >= 0 (0 disables it)")


def allowed_origins(server: ServerConfig) -> frozenset[str]:
    """``"https://a.example, https://b.example"`` -> the set of origins CORS reflects."""
    return frozenset(o.strip().rstrip("/") for o in server.allowed_origins.split(",") if o.strip())


def _validate_queue(q: QueueConfig) -> None:
    if not 0 <= q.workers <= 64:
        raise ConfigError(f"queue.workers (ASH_QUEUE_WORKERS) must be 0..64, got {q.workers}")
    if q.poll_interval_s <= 0:
        raise ConfigError("queue.poll_interval_s (ASH_QUEUE_POLL_INTERVAL_S) must be positive")
    if not 0 <= q.retry_delay_s <= q.retry_delay_cap_s:
        raise ConfigError("queue.retry_delay_s (ASH_QUEUE_RETRY_DELAY_S) must be between 0 and "
                          f"queue.retry_delay_cap_s ({q.retry_delay_cap_s}), got {q.retry_delay_s}")


def floor_layers(floor: str) -> tuple[str, ...]:
    """``"bwrap,limits"`` -> its layers; ``"none"`` or ``""`` -> no floor."""
    layers = tuple(x.strip() for x in floor.split(",") if x.strip())
    return () if layers == ("none",) else layers


def egress_pins(proxy: ProxyConfig) -> dict[str, str]:
    pins = (p.strip().partition("=") for p in proxy.egress_pins.split(",") if p.strip())
    return {host.strip().lower(): addr.strip() for host, _, addr in pins}


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

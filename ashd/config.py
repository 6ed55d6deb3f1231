"""ashd configuration: defaults, then a TOML file, then the environment, then flags.

The result is one frozen :class:`Config`; each component receives only its section.
Validation errors name the key and where its value came from. Secrets are wrapped in
:class:`Secret` so they never appear in logs, reprs or ``ashctl config show``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ashd.body_policy import BodyPolicy
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
    # standalone: API + local sandboxes; coordinator: API + routing to runners, no local
    # sandboxes; runner: sandboxes only, registered with the coordinators (docs/scale-out.md)
    mode: str = "standalone"
    host: str = "127.0.0.1"  # address the REST + SSE API listens on
    port: int = 4100  # TCP port of the API
    allowed_origins: str = ""  # CORS: comma list of origins to reflect; empty = no CORS headers at all
    # Opt-in disclosure: /health shows pool figures and the active sessions of all tenants
    # without a key (as Ash does). Off: without a key it is only {status, version, uptime}.
    public_health_figures: bool = False


@dataclass(frozen=True)
class StoreConfig:
    # Empty: SQLite, <data_dir>/ash.db; else sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST/DB.
    # Kept out of repr: the URL may hold a password.
    database_url: str = field(default="", repr=False)


@dataclass(frozen=True)
class PoolConfig:
    max_sandboxes: int = 1000  # live sandboxes at most; at capacity the least recently used idle one is evicted
    idle_timeout_ms: int = 1_800_000  # a sandbox idle this long is stopped and its session paused
    bridge_ready_timeout_s: float = 30.0  # how long a new sandbox and its CLI may take to become ready
    stop_grace_s: float = 5.0  # between SIGTERM and SIGKILL when a sandbox is stopped
    sweep_interval_s: float = 60.0  # how often idle sandboxes are looked for
    sse_heartbeat_s: float = 15.0  # a ": keep-alive" comment on a stream idle this long
    prewarm_per_agent: int = 0  # default pre-warmed sandboxes per agent (agent config preWarmCount wins)
    park_after_ms: int = 120_000  # a session with no turn this long is parked: CLI and bridge exit, it stays active
    # Live CLIs at most (pre-warmed ones count); at the cap the least recently used idle session is parked.
    max_warm_sessions: int = -1  # -1: (MemAvailable at start - 1 GiB) / 250 MiB, at least 1
    park_below_available_mb: int = 512  # host MemAvailable under this: idle sessions are parked, LRU first (0: off)
    max_concurrent_starts: int = 0  # sandbox/CLI starts run at once, the rest queue; 0: max(2, CPU cores)
    max_queued_starts: int = 256  # starts that may wait for a slot; past it a create gets 503 with Retry-After
    max_turns_per_tenant: int = 8  # turns one tenant runs at once; more wait up to 30 s, then 429; 0: unbounded


@dataclass(frozen=True)
class SnapshotConfig:
    """Where workspace snapshots go: unset = <data>/snapshots; a directory (path or file:///dir);
    s3://bucket/prefix/."""

    url: str = ""  # empty: <data_dir>/snapshots; file:///dir; s3://bucket/prefix/
    s3_endpoint: str = ""  # URL of an S3-compatible server; empty: AWS
    s3_region: str = "us-east-1"  # region of the S3 bucket
    max_bytes: int = 1 << 30  # file content a workspace snapshot may hold, in bytes


@dataclass(frozen=True)
class SupervisionConfig:
    """Restart policy of agent processes (see ashd/policy.py)."""

    intensity: int = 3  # restarts of one session's agent process allowed within period_s
    period_s: float = 60.0  # the window of intensity
    backoff_base_s: float = 0.2  # first restart delay; doubles per restart, with jitter
    backoff_cap_s: float = 30.0  # longest restart delay
    min_uptime_s: float = 1.0  # a run shorter than this counts as a failed start
    stable_after_s: float = 60.0  # a run this long resets the session's restart history
    budget_limit: int = 10  # restarts per tenant per budget_period_s (agent processes, session actors apart); then 503
    budget_period_s: float = 60.0  # the window of budget_limit
    degraded_after_failed_starts: int = 3  # /health says degraded once this many sandbox starts in a row failed
    session_actor_idle_s: float = 300.0  # a session actor with no sandbox, turn or start stops after this long idle
    tree_intensity: int = 3  # restarts of one long-lived actor (pool, session supervisor) within tree_period_s
    tree_period_s: float = 60.0  # the window of tree_intensity and tree_budget_limit
    tree_budget_limit: int = 5  # restarts of the whole actor tree per tree_period_s; then ashd exits non-zero
    session_intensity: int = 3  # crashes of one session's actor within period_s before the session goes to error


@dataclass(frozen=True)
class ModelConfig:
    """Where the real model API is, and the credential ashd uses for it."""

    base_url: str = "https://api.anthropic.com"  # the model API the model proxy forwards to
    api_key: Secret = field(default_factory=lambda: Secret(""))  # sent upstream as x-api-key; never in a sandbox
    auth_token: Secret = field(default_factory=lambda: Secret(""))  # sent upstream as a Bearer token instead


@dataclass(frozen=True)
class AuthConfig:
    api_key: Secret = field(default_factory=lambda: Secret(""))  # a fixed admin key of tenant "default"
    # encrypts stored credentials (AES-256-GCM) and keys API key hashes (HMAC); keep it stable
    credential_key: Secret = field(default_factory=lambda: Secret(""))
    # Guards /api/internal/*; empty = those routes are disabled (fail closed, unlike Ash).
    internal_secret: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class RateLimitConfig:
    """Token buckets per API key (per client address without one); 0 disables a limit."""

    window_s: float = 900.0  # the window of every limit below, in seconds
    global_max: int = 1500  # requests per window, any route
    sessions_max: int = 20  # POST /api/sessions per window
    agents_max: int = 20  # POST /api/agents per window


@dataclass(frozen=True)
class SandboxConfig:
    """How sessions are isolated (docs/security.md). Limits: defaults, then ceilings (max_*)."""

    permission_mode: str = "bypassPermissions"  # the CLI's default: bypassPermissions, default, acceptEdits, plan
    isolation: str = "bwrap"  # "bwrap" (default) or "none" (no OS isolation: an explicit opt-out)
    floor: str = "bwrap,limits,proxy"  # layers without which no session starts ("none": no floor)
    mount_root: Path = Path("/run/ashd")  # host paths the sandbox uids must reach
    uid_base: int = 200_000  # first host uid given to sandboxes, one uid per live sandbox
    uid_count: int = 65_000  # how many uids from uid_base; bounds live sandboxes
    memory_mb: int = 1024  # default memory limit of a sandbox (cgroup), MiB
    cpus: float = 1.0  # default CPU limit, in CPUs
    # Seconds a new sandbox runs without its CPU limit: the CLI's start and first query use more
    # than one CPU (a 1-CPU quota throttles a wake by ~80 ms); 0: the limit from the first instant.
    start_cpu_boost_s: float = 3.0
    pids: int = 512  # default limit of processes and threads
    disk_mb: int = 2048  # default size of the workspace disk image (the disk quota), MiB
    tmp_mb: int = 256  # default size of the private /tmp, MiB
    max_memory_mb: int = 8192  # ceiling an agent's .ashd/sandbox.json may ask for
    max_cpus: float = 4.0  # ceiling of cpus
    max_pids: int = 4096  # ceiling of pids
    max_disk_mb: int = 20480  # ceiling of disk_mb
    max_tmp_mb: int = 4096  # ceiling of tmp_mb
    disk_reserve_mb: int = 512  # data disk room no workspace image may claim, MiB (the larger of this and the %)
    disk_reserve_percent: float = 5.0  # the same room as a percentage of the data file system
    turn_idle_timeout_s: float = 600.0  # a turn with no event for this long is interrupted, then its agent killed
    zygote: bool = True  # fork agent processes from one pre-imported process (faster starts, shared memory)


@dataclass(frozen=True)
class ProxyConfig:
    """The model proxy and the egress proxy, as seen from inside a sandbox."""

    model_port: int = 8080  # loopback port of the model proxy inside each sandbox
    egress_port: int = 3128  # loopback port of the egress proxy inside each sandbox
    egress_pins: str = ""  # "name=ip,name2=ip2": trusted fixed addresses for allowlisted names
    max_connections_per_sandbox: int = 32  # open connections per sandbox, per proxy; more are refused
    # No byte either way for this long closes a proxied connection. As long as the CLI's own
    # request timeout (10 min): a non-streamed reply sends nothing until it was generated whole.
    idle_timeout_s: float = 600.0
    max_request_bytes: int = 32 * 1024 * 1024  # largest request body the model proxy reads and checks; more: 413
    # Comma list of what model requests may ask the provider to do outside the sandbox:
    # server tool types without the date suffix (web_search, web_fetch, code_execution, ...)
    # and mcp_servers, container, files, urls. Empty: all refused (400).
    allowed_server_tools: str = ""


@dataclass(frozen=True)
class QueueConfig:
    """The prompt queue's worker (POST /api/queue; ashd/http/queue_worker.py)."""

    workers: int = 1  # queued turns this daemon runs at once; 0: it runs none (others may)
    poll_interval_s: float = 1.0  # how often an idle worker looks for due items
    retry_delay_s: float = 5.0  # delay before the first retry; doubles with each retry
    retry_delay_cap_s: float = 300.0  # longest delay between retries
    max_waiting_per_tenant: int = 1000  # prompts a tenant may have pending or running; more: 429
    keep_finished_s: float = 604800.0  # finished items (completed, failed, cancelled) go after this; 0: kept


@dataclass(frozen=True)
class EvalsConfig:
    """Eval runs (POST /api/agents/:name/eval-runs; ashd/evals/)."""

    concurrency: int = 2  # eval cases this daemon runs at once (all runs), each in its own sandbox
    grader_model: str = "claude-haiku-4-5"  # the model the rubric scorer asks, through [model]
    grader_timeout_s: float = 120.0  # longest wait for one grading reply


@dataclass(frozen=True)
class AgentsConfig:
    """Deploys (``POST /api/agents``); by server path: ashd/files/agent_path.py."""

    # Comma list of absolute folders inside which keys without the operator's deploy-path
    # grant may register agent folders; empty: such keys deploy by upload only.
    path_roots: str = ""
    max_per_tenant: int = 200  # agents a tenant may have; deploying one more (a new name) is a 409


@dataclass(frozen=True)
class ClusterConfig:
    """Coordinators and runners (``server.mode``; docs/scale-out.md). Ash's environment names."""

    runner_id: str = ""  # this runner's id in the registry; empty: runner-<hostname>-<pid>
    runner_host: str = "127.0.0.1"  # address a runner's own API (/runner/*) listens on
    runner_port: int = 4200  # TCP port of a runner's own API
    runner_advertise_host: str = ""  # the address coordinators reach this runner at; empty: runner_host
    server_url: str = ""  # comma list of the coordinators' URLs a runner registers with
    heartbeat_interval_s: float = 10.0  # how often a runner reports its capacity to the coordinators
    # A runner not heard from for this long is dead: fenced, its sessions paused (then resumable elsewhere).
    # A runner stops its sandboxes one heartbeat interval sooner once no coordinator takes its heartbeats.
    liveness_timeout_s: float = 30.0


@dataclass(frozen=True)
class DebugConfig:
    """Test-only switches; never turn these on in production."""

    fault_injection: bool = False  # TEST ONLY: POST /api/internal/faults crashes actors on request (docs/operations.md)


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("data")  # state: database, agents, sandboxes, snapshots, the bootstrap key
    log_level: str = "info"  # debug, info, warning or error
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
    evals: EvalsConfig = field(default_factory=EvalsConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    max_attachment_size: int = 10 * 1024 * 1024  # largest attachment, in bytes after base64 decoding
    max_session_attachments_size: int = 100 * 1024 * 1024  # what one session's attachments may hold, in bytes

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

ISOLATION_MODES = ("bwrap", "none")
ISOLATION_LAYERS = ("bwrap", "uid", "limits", "netns", "proxy", "egress", "quota")

MODES = ("standalone", "coordinator", "runner")
PERMISSION_MODES = ("bypassPermissions", "default", "acceptEdits", "plan")
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def _validate(config: Config) -> None:
    if not 0 <= config.server.port <= 65535:
        raise ConfigError(f"server.port must be 0..65535, got {config.server.port}")
    if config.pool.max_sandboxes < 1:
        raise ConfigError("pool.max_sandboxes (ASH_MAX_SANDBOXES) must be at least 1")
    if config.pool.idle_timeout_ms < 1000:
        raise ConfigError("pool.idle_timeout_ms (ASH_IDLE_TIMEOUT_MS) must be at least 1000")
    if config.pool.park_after_ms < 1000:
        raise ConfigError(f"pool.park_after_ms (ASH_PARK_AFTER_MS) must be at least 1000, "
                          f"got {config.pool.park_after_ms}")
    if config.pool.park_below_available_mb < 0:
        raise ConfigError(f"pool.park_below_available_mb (ASH_PARK_BELOW_AVAILABLE_MB) must be 0 (off) or more, "
                          f"got {config.pool.park_below_available_mb}")
    if config.pool.max_warm_sessions == 0 or config.pool.max_warm_sessions < -1:
        raise ConfigError(f"pool.max_warm_sessions (ASH_MAX_WARM_SESSIONS) must be at least 1 "
                          f"(or -1: from the host's memory), got {config.pool.max_warm_sessions}")
    _validate_admission(config.pool)
    if config.sandbox.permission_mode not in PERMISSION_MODES:
        raise ConfigError(
            f"sandbox.permission_mode must be one of {', '.join(PERMISSION_MODES)}, "
            f"got {config.sandbox.permission_mode!r}"
        )
    if config.supervision.degraded_after_failed_starts < 1:
        raise ConfigError("supervision.degraded_after_failed_starts (ASH_DEGRADED_AFTER_FAILED_STARTS) "
                          "must be at least 1")
    if config.supervision.session_actor_idle_s <= 0:
        raise ConfigError("supervision.session_actor_idle_s (ASH_SESSION_ACTOR_IDLE_S) must be more than 0")
    _validate_sandbox(config.sandbox, config.proxy)
    _validate_queue(config.queue)
    _validate_evals(config.evals)
    _validate_rate_limit(config.rate_limit)
    _validate_path_roots(config.agents)
    _validate_cluster(config)
    if config.max_attachment_size < 1:
        raise ConfigError("max_attachment_size (ASH_MAX_ATTACHMENT_SIZE) must be at least 1 byte")
    if config.max_session_attachments_size < config.max_attachment_size:
        raise ConfigError("max_session_attachments_size (ASH_MAX_SESSION_ATTACHMENTS_SIZE) must be at least "
                          f"max_attachment_size ({config.max_attachment_size} bytes), got "
                          f"{config.max_session_attachments_size}")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if not config.model.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"model.base_url (ANTHROPIC_BASE_URL) must be an http(s) URL, got {config.model.base_url!r}")


def _validate_cluster(config: Config) -> None:
    mode, cluster = config.server.mode, config.cluster
    if mode not in MODES:
        raise ConfigError(f"server.mode (ASH_MODE) must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "standalone" and not config.auth.internal_secret:
        raise ConfigError(f"{mode} mode needs auth.internal_secret (ASH_INTERNAL_SECRET): runners and "
                          "coordinators authenticate each other with it; set the same value on every one")
    if mode == "runner":
        urls = [u.strip() for u in cluster.server_url.split(",") if u.strip()]
        if not urls:
            raise ConfigError("runner mode needs cluster.server_url (ASH_SERVER_URL): the coordinator(s) "
                              "to register with, e.g. http://10.0.0.1:4100")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"cluster.server_url (ASH_SERVER_URL): {url!r} is not an http(s) URL")
    if cluster.runner_id and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", cluster.runner_id):
        raise ConfigError(f"cluster.runner_id (ASH_RUNNER_ID) must be 1-128 letters, digits, '.', '_' or '-', "
                          f"starting with a letter or digit, got {cluster.runner_id!r}")
    if not 1 <= cluster.runner_port <= 65535:
        raise ConfigError(f"cluster.runner_port (ASH_RUNNER_PORT) must be 1..65535, got {cluster.runner_port}")
    if not cluster.heartbeat_interval_s > 0:
        raise ConfigError("cluster.heartbeat_interval_s (ASH_RUNNER_HEARTBEAT_S) must be more than 0")
    if not cluster.liveness_timeout_s >= 2 * cluster.heartbeat_interval_s:
        raise ConfigError("cluster.liveness_timeout_s (ASH_RUNNER_LIVENESS_TIMEOUT_S) must be at least twice "
                          f"cluster.heartbeat_interval_s ({cluster.heartbeat_interval_s} s), "
                          f"got {cluster.liveness_timeout_s}")


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
    if sb.disk_reserve_mb < 0:
        raise ConfigError(f"sandbox.disk_reserve_mb (ASH_DISK_RESERVE_MB) must be >= 0, got {sb.disk_reserve_mb}")
    if not 0 <= sb.disk_reserve_percent < 100:
        raise ConfigError("sandbox.disk_reserve_percent (ASH_DISK_RESERVE_PERCENT) must be 0..99.9 "
                          f"(percent of the data disk), got {sb.disk_reserve_percent}")
    if not 0.05 <= sb.cpus <= sb.max_cpus:
        raise ConfigError(f"sandbox.cpus must be between 0.05 and sandbox.max_cpus ({sb.max_cpus})")
    if not 0 <= sb.start_cpu_boost_s <= 60:
        raise ConfigError("sandbox.start_cpu_boost_s (ASH_SANDBOX_START_CPU_BOOST_S) must be between 0 and 60 "
                          f"seconds, got {sb.start_cpu_boost_s}")
    if not 1 <= sb.turn_idle_timeout_s <= 86_400:
        raise ConfigError("sandbox.turn_idle_timeout_s (ASH_TURN_IDLE_TIMEOUT_S) must be between 1 and 86400 "
                          f"seconds, got {sb.turn_idle_timeout_s}")
    for name in ("model_port", "egress_port"):
        if not 1 <= getattr(proxy, name) <= 65535:
            raise ConfigError(f"proxy.{name} must be 1..65535")
    if not 1 <= proxy.max_connections_per_sandbox <= 10000:
        raise ConfigError("proxy.max_connections_per_sandbox (ASH_PROXY_MAX_CONNECTIONS) must be 1..10000, "
                          f"got {proxy.max_connections_per_sandbox}")
    if not proxy.idle_timeout_s >= 1:
        raise ConfigError(f"proxy.idle_timeout_s (ASH_PROXY_IDLE_TIMEOUT_S) must be at least 1 second, "
                          f"got {proxy.idle_timeout_s}")
    if not 1024 <= proxy.max_request_bytes <= 1024 ** 3:
        raise ConfigError("proxy.max_request_bytes (ASH_PROXY_MAX_REQUEST_BYTES) must be 1024..1073741824, "
                          f"got {proxy.max_request_bytes}")
    try:
        BodyPolicy.parse(proxy.allowed_server_tools)
    except ValueError as exc:
        raise ConfigError(f"proxy.allowed_server_tools (ASH_PROXY_ALLOWED_SERVER_TOOLS): {exc}") from None
    for pin in filter(None, (p.strip() for p in proxy.egress_pins.split(","))):
        host, sep, addr = pin.partition("=")
        if not sep or not host or not addr:
            raise ConfigError(f"proxy.egress_pins (ASH_EGRESS_PINS): {pin!r} is not name=address")


def _validate_admission(pool: PoolConfig) -> None:
    for name, var, zero in (("max_concurrent_starts", "ASH_MAX_CONCURRENT_STARTS", "max(2, CPU cores)"),
                            ("max_queued_starts", "ASH_MAX_QUEUED_STARTS", "no queue"),
                            ("max_turns_per_tenant", "ASH_MAX_TURNS_PER_TENANT", "unbounded")):
        if not 0 <= getattr(pool, name) <= 100_000:
            raise ConfigError(f"pool.{name} ({var}) must be 0..100000 (0: {zero}), got {getattr(pool, name)}")


def start_slots(pool: PoolConfig) -> int:
    """Sandbox starts that run at once: ``pool.max_concurrent_starts``, or max(2, CPU cores)."""
    return pool.max_concurrent_starts or max(2, os.cpu_count() or 1)


def _validate_rate_limit(rl: RateLimitConfig) -> None:
    if not rl.window_s > 0:
        raise ConfigError(f"rate_limit.window_s (ASH_RATE_LIMIT_WINDOW_S) must be > 0 seconds, got {rl.window_s}")
    for name, var in (("global_max", "GLOBAL"), ("sessions_max", "SESSIONS"), ("agents_max", "AGENTS")):
        if getattr(rl, name) < 0:
            raise ConfigError(f"rate_limit.{name} (ASH_RATE_LIMIT_{var}) must be >= 0 (0 disables it)")


def agent_path_roots(agents: AgentsConfig) -> tuple[Path, ...]:
    """``"/srv/a, /srv/b"`` -> those folders (as given; ashd/files/agent_path.py opens them)."""
    return tuple(Path(p.strip()) for p in agents.path_roots.split(",") if p.strip())


def _validate_path_roots(agents: AgentsConfig) -> None:
    if agents.max_per_tenant < 1:
        raise ConfigError(f"agents.max_per_tenant (ASH_MAX_AGENTS) must be at least 1, got {agents.max_per_tenant}")
    for root in agent_path_roots(agents):
        if not root.is_absolute() or ".." in root.parts:
            raise ConfigError(f"agents.path_roots (ASH_AGENT_PATH_ROOTS): {str(root)!r} must be an "
                              "absolute folder path without '..'")


def allowed_origins(server: ServerConfig) -> frozenset[str]:
    """``"https://a.example, https://b.example"`` -> the set of origins CORS reflects."""
    return frozenset(o.strip().rstrip("/") for o in server.allowed_origins.split(",") if o.strip())


def _validate_evals(e: EvalsConfig) -> None:
    if not 1 <= e.concurrency <= 64:
        raise ConfigError(f"evals.concurrency (ASH_EVAL_CONCURRENCY) must be 1..64, got {e.concurrency}")
    if not e.grader_model.strip():
        raise ConfigError("evals.grader_model (ASH_EVAL_GRADER_MODEL) must not be empty")
    if e.grader_timeout_s <= 0:
        raise ConfigError("evals.grader_timeout_s (ASH_EVAL_GRADER_TIMEOUT_S) must be positive")


TEN_YEARS_S = 3650 * 86400.0


def _validate_queue(q: QueueConfig) -> None:
    if not 0 <= q.workers <= 64:
        raise ConfigError(f"queue.workers (ASH_QUEUE_WORKERS) must be 0..64, got {q.workers}")
    if q.poll_interval_s <= 0:
        raise ConfigError("queue.poll_interval_s (ASH_QUEUE_POLL_INTERVAL_S) must be positive")
    if not 0 <= q.retry_delay_s <= q.retry_delay_cap_s:
        raise ConfigError("queue.retry_delay_s (ASH_QUEUE_RETRY_DELAY_S) must be between 0 and "
                          f"queue.retry_delay_cap_s ({q.retry_delay_cap_s}), got {q.retry_delay_s}")
    if q.max_waiting_per_tenant < 1:
        raise ConfigError("queue.max_waiting_per_tenant (ASH_QUEUE_MAX_WAITING) must be at least 1, got "
                          f"{q.max_waiting_per_tenant}")
    if not 0 <= q.keep_finished_s <= TEN_YEARS_S:
        raise ConfigError("queue.keep_finished_s (ASH_QUEUE_KEEP_FINISHED_S) must be 0 (finished items are kept) "
                          f"or seconds up to {TEN_YEARS_S:.0f} (ten years), got {q.keep_finished_s}")


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

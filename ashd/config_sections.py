"""ashd's settings, section by section: each a frozen dataclass with its defaults, and
what a setting means where components read it (:func:`floor_layers` and the like).

Loading (defaults, TOML, environment, flags) is :mod:`ashd.config`; checking the values,
:mod:`ashd.config_checks`. Components import these through :mod:`ashd.config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("standalone", "coordinator", "runner")
PERMISSION_MODES = ("bypassPermissions", "default", "acceptEdits", "plan")
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def start_slots(pool: PoolConfig) -> int:
    """Sandbox starts that run at once: ``pool.max_concurrent_starts``, or max(2, CPU cores)."""
    return pool.max_concurrent_starts or max(2, os.cpu_count() or 1)


def agent_path_roots(agents: AgentsConfig) -> tuple[Path, ...]:
    """``"/srv/a, /srv/b"`` -> those folders (as given; ashd/files/agent_path.py opens them)."""
    return tuple(Path(p.strip()) for p in agents.path_roots.split(",") if p.strip())


def allowed_origins(server: ServerConfig) -> frozenset[str]:
    """``"https://a.example, https://b.example"`` -> the set of origins CORS reflects."""
    return frozenset(o.strip().rstrip("/") for o in server.allowed_origins.split(",") if o.strip())


def floor_layers(floor: str) -> tuple[str, ...]:
    """``"bwrap,limits"`` -> its layers; ``"none"`` or ``""`` -> no floor."""
    layers = tuple(x.strip() for x in floor.split(",") if x.strip())
    return () if layers == ("none",) else layers


def egress_pins(proxy: ProxyConfig) -> dict[str, str]:
    pins = (p.strip().partition("=") for p in proxy.egress_pins.split(",") if p.strip())
    return {host.strip().lower(): addr.strip() for host, _, addr in pins}

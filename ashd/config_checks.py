"""What a loaded configuration must satisfy (:func:`validate`): every refusal names the key,
its environment variable where it has one, and what is allowed."""

from __future__ import annotations

import re

from ashd.body_policy import BodyPolicy
from ashd.config_sections import (
    LOG_LEVELS,
    MODES,
    PERMISSION_MODES,
    AgentsConfig,
    Config,
    EvalsConfig,
    PoolConfig,
    ProxyConfig,
    QueueConfig,
    RateLimitConfig,
    SandboxConfig,
    agent_path_roots,
    floor_layers,
)
from ashd.errors import ConfigError

ISOLATION_MODES = ("bwrap", "none")
ISOLATION_LAYERS = ("bwrap", "uid", "limits", "netns", "proxy", "egress", "quota")


def validate(config: Config) -> None:
    """Raises ConfigError for the first value that is not allowed."""
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


def _validate_rate_limit(rl: RateLimitConfig) -> None:
    if not rl.window_s > 0:
        raise ConfigError(f"rate_limit.window_s (ASH_RATE_LIMIT_WINDOW_S) must be > 0 seconds, got {rl.window_s}")
    for name, var in (("global_max", "GLOBAL"), ("sessions_max", "SESSIONS"), ("agents_max", "AGENTS")):
        if getattr(rl, name) < 0:
            raise ConfigError(f"rate_limit.{name} (ASH_RATE_LIMIT_{var}) must be >= 0 (0 disables it)")


def _validate_path_roots(agents: AgentsConfig) -> None:
    if agents.max_per_tenant < 1:
        raise ConfigError(f"agents.max_per_tenant (ASH_MAX_AGENTS) must be at least 1, got {agents.max_per_tenant}")
    for root in agent_path_roots(agents):
        if not root.is_absolute() or ".." in root.parts:
            raise ConfigError(f"agents.path_roots (ASH_AGENT_PATH_ROOTS): {str(root)!r} must be an "
                              "absolute folder path without '..'")


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

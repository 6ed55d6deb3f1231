from __future__ import annotations

import re
from pathlib import Path

import pytest

from ashd import config
from ashd.errors import ConfigError


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(env={})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 4100)
    assert cfg.data_dir == tmp_path.resolve() / "data"
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve()}/data/ash.db"
    assert cfg.pool.max_sandboxes == 1000 and cfg.pool.idle_timeout_ms == 1_800_000


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    file = tmp_path / "ashd.toml"
    file.write_text('data_dir = "/srv/a"\n[server]\nport = 5000\nhost = "0.0.0.0"\n[pool]\nmax_sandboxes = 7\n')
    cfg = config.load(file=file, env={"ASH_PORT": "6000", "ASH_MAX_SANDBOXES": "9"}, flags={"server.port": 7000})
    assert cfg.server.port == 7000  # flag beats env beats file
    assert cfg.pool.max_sandboxes == 9  # env beats file
    assert cfg.server.host == "0.0.0.0" and cfg.data_dir == Path("/srv/a")  # file beats default


def test_errors_name_the_key_and_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server.port.*int.*\$ASH_PORT"):
        config.load(env={"ASH_PORT": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'server.prot'.*bad.toml"):
        config.load(file=bad, env={})
    with pytest.raises(ConfigError, match="ASH_MAX_SANDBOXES"):
        config.load(env={"ASH_MAX_SANDBOXES": "0"})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(file=tmp_path / "missing.toml", env={})


def test_park_settings_default_and_bad_ones_name_the_variable() -> None:
    cfg = config.load(env={})
    assert cfg.pool.park_after_ms == 120_000 and cfg.pool.max_warm_sessions == -1  # -1: from memory
    assert config.load(env={"ASH_PARK_AFTER_MS": "1500", "ASH_MAX_WARM_SESSIONS": "2"}).pool.max_warm_sessions == 2
    with pytest.raises(ConfigError, match=r"ASH_PARK_AFTER_MS.*at least 1000, got 10"):
        config.load(env={"ASH_PARK_AFTER_MS": "10"})
    with pytest.raises(ConfigError, match=r"ASH_PARK_BELOW_AVAILABLE_MB.*got -1"):
        config.load(env={"ASH_PARK_BELOW_AVAILABLE_MB": "-1"})
    for cap in ("0", "-2"):
        with pytest.raises(ConfigError, match=rf"ASH_MAX_WARM_SESSIONS.*got {cap}"):
            config.load(env={"ASH_MAX_WARM_SESSIONS": cap})


def test_secrets_are_masked() -> None:
    cfg = config.load(env={"ANTHROPIC_API_KEY": "sk-secret", "ASH_API_KEY": "ash_secret",
                           "ASH_DATABASE_URL": "postgresql+psycopg://u:pw@db/x"})
    shown = str(config.describe(cfg)) + repr(cfg)
    assert "sk-secret" not in shown and "ash_secret" not in shown and "pw@" not in shown
    assert cfg.model.api_key.reveal() == "sk-secret"
    assert config.describe(cfg)["store"]["database_url"] == "postgresql+psycopg://u:***@db/x"


def test_config_is_frozen() -> None:
    cfg = config.load(env={})
    with pytest.raises(AttributeError):
        cfg.server.port = 1  # type: ignore[misc]


def test_a_plain_key_is_not_a_section(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[data_dir]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config section \[data_dir\]"):
        config.load(file=bad, env={})


# -- relative paths: resolved once, at load, against the directory ashd started in -----------

PATH_SOURCES = ("file", "env", "flag")


def _load_one(source: str, key: str, var: str, value: str, tmp_path: Path) -> config.Config:
    section, _, name = key.rpartition(".")
    if source == "file":
        toml = tmp_path / "conf" / "ashd.toml"
        toml.parent.mkdir(exist_ok=True)
        toml.write_text(f'[{section}]\n{name} = "{value}"\n' if section else f'{name} = "{value}"\n')
        return config.load(file=toml, env={})
    if source == "env":
        return config.load(env={var: value})
    return config.load(env={}, flags={key: Path(value) if key == "data_dir" else value})


@pytest.fixture
def started_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory ashd 'was started in'; the test moves away from it after loading."""
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    return start.resolve()


@pytest.mark.parametrize("source", PATH_SOURCES)
def test_relative_data_dir_is_absolute_against_the_start_directory(
        source: str, started_in: Path, tmp_path: Path) -> None:
    cfg = _load_one(source, "data_dir", "ASH_DATA_DIR", "./data", tmp_path)
    assert cfg.data_dir == started_in / "data"
    assert cfg.database_url == f"sqlite:///{started_in}/data/ash.db"


@pytest.mark.parametrize("source", PATH_SOURCES)
def test_relative_mount_root_is_absolute(source: str, started_in: Path, tmp_path: Path) -> None:
    cfg = _load_one(source, "sandbox.mount_root", "ASH_SANDBOX_MOUNT_ROOT", "run/ashd", tmp_path)
    assert cfg.sandbox.mount_root == started_in / "run" / "ashd"


@pytest.mark.parametrize("source", PATH_SOURCES)
def test_relative_sqlite_file_is_absolute(source: str, started_in: Path, tmp_path: Path) -> None:
    cfg = _load_one(source, "store.database_url", "ASH_DATABASE_URL", "sqlite:///db/ash.db?timeout=5", tmp_path)
    assert cfg.database_url == f"sqlite:///{started_in}/db/ash.db?timeout=5"


@pytest.mark.parametrize("source", PATH_SOURCES)
@pytest.mark.parametrize("given", ["snaps", "./snaps", "file:snaps"])
def test_relative_snapshot_dir_is_an_absolute_file_url(
        source: str, given: str, started_in: Path, tmp_path: Path) -> None:
    cfg = _load_one(source, "snapshot.url", "ASH_SNAPSHOT_URL", given, tmp_path)
    assert cfg.snapshot.url == (started_in / "snaps").as_uri()


def test_urls_that_name_no_relative_path_are_kept(started_in: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:////srv/ash.db", "postgresql+psycopg://u@db/x"):
        assert config.load(env={"ASH_DATABASE_URL": url}).database_url == url
    for url in ("s3://bucket/prefix/", "file:///srv/snaps", ""):
        assert config.load(env={"ASH_SNAPSHOT_URL": url}).snapshot.url == url


def test_a_relative_config_file_is_named_absolute_in_errors(started_in: Path) -> None:
    (started_in / "conf").mkdir()
    (started_in / "conf" / "bad.toml").write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=rf"from {started_in}/conf/bad.toml"):
        config.load(file=Path("conf/bad.toml"), env={})
    with pytest.raises(ConfigError, match=rf"config file {started_in}/conf/missing.toml does not exist"):
        config.load(file=Path("conf/missing.toml"), env={})


def test_paths_stay_put_when_the_process_moves(started_in: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load(env={"ASH_DATA_DIR": "data"})
    monkeypatch.chdir(tmp_path)  # e.g. a bridge runs with its workspace as cwd
    assert cfg.data_dir == started_in / "data" and cfg.data_dir.is_absolute()


def test_agent_path_roots(tmp_path: Path) -> None:
    cfg = config.load(env={"ASH_AGENT_PATH_ROOTS": "/srv/agents, /opt/shared"})
    assert config.agent_path_roots(cfg.agents) == (Path("/srv/agents"), Path("/opt/shared"))
    assert config.agent_path_roots(config.load(env={}).agents) == ()
    with pytest.raises(ConfigError, match=r"agents.path_roots \(ASH_AGENT_PATH_ROOTS\).*absolute"):
        config.load(env={"ASH_AGENT_PATH_ROOTS": "srv/agents"})
    file = tmp_path / "ashd.toml"
    file.write_text('[agents]\npath_roots = "/srv/../etc"\n')
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        config.load(file=file, env={})


def test_public_health_figures_is_an_opt_in_boolean(tmp_path: Path) -> None:
    assert config.load(env={}).server.public_health_figures is False
    for word, expected in (("1", True), ("true", True), ("On", True), ("0", False), ("no", False)):
        assert config.load(env={"ASH_PUBLIC_HEALTH_FIGURES": word}).server.public_health_figures is expected
    toml = tmp_path / "ashd.toml"
    toml.write_text("[server]\npublic_health_figures = true\n")
    assert config.load(file=toml, env={}).server.public_health_figures is True
    with pytest.raises(ConfigError, match=r"server.public_health_figures.*'maybe'.*ASH_PUBLIC_HEALTH_FIGURES"):
        config.load(env={"ASH_PUBLIC_HEALTH_FIGURES": "maybe"})


def test_a_runner_comes_up_from_ashs_environment_names_alone() -> None:
    cfg = config.load(env={"ASH_MODE": "runner", "ASH_RUNNER_ID": "r1", "ASH_RUNNER_PORT": "4201",
                           "ASH_SERVER_URL": "http://127.0.0.1:4100", "ASH_INTERNAL_SECRET": "s3cret",
                           "ASH_RUNNER_ADVERTISE_HOST": "10.0.0.7", "ASH_MAX_SANDBOXES": "12"})
    assert cfg.server.mode == "runner"
    cluster = cfg.cluster
    assert (cluster.runner_id, cluster.runner_port, cluster.runner_advertise_host) == ("r1", 4201, "10.0.0.7")
    assert cfg.cluster.server_url == "http://127.0.0.1:4100"
    assert cfg.pool.max_sandboxes == 12
    coordinator = config.load(flags={"server.mode": "coordinator"}, env={"ASH_INTERNAL_SECRET": "x"})
    assert coordinator.server.mode == "coordinator"


@pytest.mark.parametrize(("env", "needle"), [
    ({"ASH_MODE": "cluster"}, "server.mode (ASH_MODE) must be one of standalone, coordinator, runner"),
    ({"ASH_MODE": "coordinator"}, "coordinator mode needs auth.internal_secret (ASH_INTERNAL_SECRET)"),
    ({"ASH_MODE": "runner", "ASH_SERVER_URL": "http://c:4100"}, "runner mode needs auth.internal_secret"),
    ({"ASH_MODE": "runner", "ASH_INTERNAL_SECRET": "x"}, "runner mode needs cluster.server_url (ASH_SERVER_URL)"),
    ({"ASH_MODE": "runner", "ASH_INTERNAL_SECRET": "x", "ASH_SERVER_URL": "c:4100"}, "is not an http(s) URL"),
    ({"ASH_RUNNER_PORT": "0"}, "cluster.runner_port (ASH_RUNNER_PORT) must be 1..65535"),
    ({"ASH_RUNNER_HEARTBEAT_S": "20"}, "at least twice cluster.heartbeat_interval_s"),
])
def test_bad_cluster_settings_are_refused_with_the_variable_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config.load(env=env)


@pytest.mark.parametrize(("env", "needle"), [
    ({"ASH_QUEUE_KEEP_FINISHED_S": "nan"}, "config key 'queue.keep_finished_s' must be a finite number"),
    ({"ASH_QUEUE_POLL_INTERVAL_S": "inf"}, "config key 'queue.poll_interval_s' must be a finite number"),
    ({"ASH_QUEUE_KEEP_FINISHED_S": "-1"}, "queue.keep_finished_s (ASH_QUEUE_KEEP_FINISHED_S) must be 0"),
    ({"ASH_QUEUE_KEEP_FINISHED_S": "1e12"}, "or seconds up to 315360000 (ten years)"),
])
def test_bad_queue_settings_are_refused_with_the_variable_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config.load(env=env)


def test_finished_queue_items_are_kept_a_week_unless_set() -> None:
    assert config.load(env={}).queue.keep_finished_s == 7 * 86400
    assert config.load(env={"ASH_QUEUE_KEEP_FINISHED_S": "0"}).queue.keep_finished_s == 0

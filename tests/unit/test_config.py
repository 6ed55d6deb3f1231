from __future__ import annotations

from pathlib import Path

import pytest

from ashd import config
from ashd.errors import ConfigError


def test_defaults() -> None:
    cfg = config.load(env={})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 4100)
    assert cfg.database_url == "sqlite:///data/ash.db"
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

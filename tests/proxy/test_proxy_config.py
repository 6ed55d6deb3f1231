"""The proxies' connection bounds come from [proxy] / ASH_PROXY_*; bad values name the key."""

from __future__ import annotations

import pytest

from ashd import config as configuration
from ashd.errors import ConfigError


def test_bounds_from_the_environment() -> None:
    config = configuration.load(env={"ASH_PROXY_MAX_CONNECTIONS": "8", "ASH_PROXY_IDLE_TIMEOUT_S": "90"})
    assert (config.proxy.max_connections_per_sandbox, config.proxy.idle_timeout_s) == (8, 90.0)
    assert configuration.load(env={}).proxy.max_connections_per_sandbox == 32


@pytest.mark.parametrize(("var", "value", "key"), [
    ("ASH_PROXY_MAX_CONNECTIONS", "0", "proxy.max_connections_per_sandbox"),
    ("ASH_PROXY_IDLE_TIMEOUT_S", "0.5", "proxy.idle_timeout_s"),
    ("ASH_PROXY_MAX_REQUEST_BYTES", "10", "proxy.max_request_bytes"),
    ("ASH_PROXY_ALLOWED_SERVER_TOOLS", "web_search_20250305", "proxy.allowed_server_tools"),
    ("ASH_PROXY_ALLOWED_SERVER_TOOLS", "Web Search", "proxy.allowed_server_tools"),
])
def test_bad_bounds_name_the_key(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        configuration.load(env={var: value})


def test_request_body_settings_from_the_environment() -> None:
    config = configuration.load(env={"ASH_PROXY_MAX_REQUEST_BYTES": "65536",
                                     "ASH_PROXY_ALLOWED_SERVER_TOOLS": "web_search, mcp_servers"})
    assert config.proxy.max_request_bytes == 65536
    assert config.proxy.allowed_server_tools == "web_search, mcp_servers"
    default = configuration.load(env={}).proxy
    assert (default.max_request_bytes, default.allowed_server_tools) == (32 * 1024 * 1024, "")

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
])
def test_bad_bounds_name_the_key(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        configuration.load(env={var: value})

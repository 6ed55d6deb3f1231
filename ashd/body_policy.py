"""Which provider-side features a model request may ask for: the operator's body policy (pure).

The config parses ``proxy.allowed_server_tools`` into a :class:`BodyPolicy` at start (so a bad
name stops ashd with a message); the model proxy (``ashd/proxy/body.py``) enforces it on every
request body. It lives in the core so the config does not import the proxy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_REQUEST_BYTES = 32 * 1024 * 1024  # the Messages API's own request size limit
DATE_SUFFIX = re.compile(r"_\d{8}$")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FEATURES = ("mcp_servers", "container", "files", "urls")  # allowable names that are not tool types


@dataclass(frozen=True)
class BodyPolicy:
    allowed: frozenset[str] = frozenset()  # tool type names (no date suffix) and FEATURES
    max_bytes: int = MAX_REQUEST_BYTES

    @classmethod
    def parse(cls, allowed: str, max_bytes: int = MAX_REQUEST_BYTES) -> BodyPolicy:
        """From the config's comma list; ValueError naming a bad entry."""
        names = frozenset(n.strip() for n in allowed.split(",") if n.strip())
        for name in names:
            if not NAME.match(name) or DATE_SUFFIX.search(name):
                raise ValueError(f"{name!r} is neither a tool type without its date suffix (web_search, not "
                                 f"web_search_20250305) nor one of {', '.join(FEATURES)}")
        return cls(names, max_bytes)

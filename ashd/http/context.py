"""Everything a handler needs, built once by the daemon (loop thread only)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ashd.actors.supervisor import Tree
from ashd.config import Config
from ashd.http.aio import Offload
from ashd.http.auth import KeyHasher
from ashd.http.links import Links
from ashd.layout import Layout
from ashd.store import Store


@dataclass
class AppContext:
    config: Config
    store: Store
    tree: Tree
    offload: Offload
    hasher: KeyHasher
    links: Links = field(default_factory=Links)
    started_at: float = field(default_factory=time.monotonic)
    draining: bool = False
    turns: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def layout(self) -> Layout:
        return Layout(self.config.data_dir)

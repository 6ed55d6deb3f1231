"""Agent folders that make real failures happen."""

from __future__ import annotations

import json
import os
from pathlib import Path


def too_big_agent(base: Path, name: str = "too-big") -> Path:
    """An agent folder larger than its own ``diskMb`` quota: copying it onto the sandbox's
    disk image fails with ENOSPC during set-up, so every start of it fails (isolating launcher)."""
    agent = base / name
    (agent / ".ashd").mkdir(parents=True)
    (agent / "CLAUDE.md").write_text("You are an agent whose folder does not fit its disk.\n")
    (agent / ".ashd" / "sandbox.json").write_text(json.dumps({"limits": {"diskMb": 16}}))
    (agent / "big.bin").write_bytes(os.urandom(24 << 20))  # random: no sparse copy, no compression
    return agent

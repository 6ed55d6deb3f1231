"""The resource-limit and budget fields of a request or an agent policy (pure; raises BadRequest).

``limits`` (``{"memoryMb": 512, "cpus": 1.0, "pids": 256, "diskMb": 2048, "tmpMb": 128}``)
and ``maxBudgetUsd``, as ``POST /api/sessions`` and an agent's ``.ashd/sandbox.json`` give
them. The options validate a request with these; the sandbox merges them with the config
and the agent's file (``ashd/sandbox/limits.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ashd.errors import BadRequest

# JSON key -> (attribute, type, minimum). Minimums keep the CLI alive (it needs ~200 MB).
_LIMIT_KEYS: dict[str, tuple[str, type, float]] = {
    "memoryMb": ("memory_mb", int, 192),
    "cpus": ("cpus", float, 0.05),
    "pids": ("pids", int, 32),
    "diskMb": ("disk_mb", int, 16),
    "tmpMb": ("tmp_mb", int, 1),
}


@dataclass(frozen=True)
class Limits:
    """Resource limits; ``None`` means "not set at this level"."""

    memory_mb: int | None = None
    cpus: float | None = None
    pids: int | None = None
    disk_mb: int | None = None
    tmp_mb: int | None = None

    def over(self, base: Limits) -> Limits:
        """Fields set here replace those of ``base``."""
        return Limits(**{k: v if v is not None else getattr(base, k) for k, v in asdict(self).items()})

    def capped(self, ceiling: Limits, where: str) -> Limits:
        """Raise BadRequest if a field exceeds the ceiling's."""
        for key, (attr, _, _) in _LIMIT_KEYS.items():
            mine, cap = getattr(self, attr), getattr(ceiling, attr)
            if mine is not None and cap is not None and mine > cap:
                raise BadRequest(f"{where}.{key} is {mine}, above the allowed {cap}")
        return self

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, a) for k, (a, _, _) in _LIMIT_KEYS.items() if getattr(self, a) is not None}


def parse_limits(raw: object, where: str) -> Limits:
    """``{"memoryMb": 512, ...}`` -> Limits. Unknown keys and bad values raise BadRequest."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object with {', '.join(_LIMIT_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _LIMIT_KEYS:
            raise BadRequest(f"{where}.{key} is not a known limit ({', '.join(_LIMIT_KEYS)})")
        attr, kind, minimum = _LIMIT_KEYS[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or value == int(value))
        if not ok or value < minimum:
            raise BadRequest(f"{where}.{key} must be a number of at least {minimum:g}")
        values[attr] = kind(value)
    return Limits(**values)


def parse_budget(raw: object, where: str) -> float | None:
    if raw is None:
        return None
    if not isinstance(raw, int | float) or isinstance(raw, bool) or raw <= 0:
        raise BadRequest(f"{where} must be a positive number of US dollars")
    return float(raw)


def session_request(body: dict[str, Any]) -> tuple[Limits, float | None]:
    """The session request's ``limits`` and ``maxBudgetUsd`` fields (validated)."""
    return parse_limits(body.get("limits"), "limits"), parse_budget(body.get("maxBudgetUsd"), "maxBudgetUsd")

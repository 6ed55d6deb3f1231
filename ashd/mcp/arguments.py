"""Checking a tool call's arguments against the tool's JSON Schema.

:func:`check` raises :class:`ArgumentError` whose message names the argument
to fix and lists what the tool takes, so an MCP client (or the model driving
it) can correct the call. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


class ArgumentError(ValueError):
    """The arguments of a tool call do not match its input schema."""


def check(tool: str, schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """Return ``arguments`` as a dict if they match ``schema``; else raise :class:`ArgumentError`."""
    errors = sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(dict.fromkeys(_problem(error) for error in errors))
        raise ArgumentError(f"invalid arguments for {tool}: {problems}. It takes: {signature(schema)}.")
    return dict(arguments)


def signature(schema: Mapping[str, Any]) -> str:
    """``sessionId (string, required), model (string)``: the arguments a schema accepts."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    if not properties:
        return "no arguments"
    return ", ".join(f"{name} ({_type(spec)}{', required' if name in required else ''})"
                     for name, spec in properties.items())


def _type(spec: Mapping[str, Any]) -> str:
    if "enum" in spec:
        return " | ".join(repr(value) for value in spec["enum"])
    return str(spec.get("type", "any"))


def _problem(error: ValidationError) -> str:
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        return "missing " + ", ".join(repr(name) for name in missing)
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {})
        return "unknown argument " + ", ".join(repr(name) for name in instance if name not in known)
    where = ".".join(str(part) for part in error.path)
    return f"{where!r}: {error.message}" if where else error.message

"""Fixtures: a fake ashd HTTP server (see tests/client/fake_ashd.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_fake() -> ModuleType:
    # Loaded by path: works under any pytest import mode and needs no tests/__init__.py.
    name = "ashd_tests_fake_ashd"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "client" / "fake_ashd.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake_module = _load_fake()


@pytest.fixture
def fake_ashd() -> Iterator[Any]:
    """A started FakeAshd; closed (and every gate released) after the test."""
    server = fake_module.FakeAshd()
    server.start()
    yield server
    server.close()


@pytest.fixture
def frame() -> Any:
    """``frame(event, data, event_id=None) -> bytes``: one SSE frame."""
    return fake_module.frame

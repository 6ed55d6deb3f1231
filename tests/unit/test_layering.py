"""docs/architecture.md: layers depend one way; handlers never import pykka, actors never tornado."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ashd"
PURE = ["config.py", "errors.py", "states.py", "events.py", "options.py", "layout.py", "deploy.py"]


def runtime_imports(path: Path) -> set[str]:
    """Top-level module names imported outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


PYKKA_ADAPTERS = {"runtime/offload.py", "runtime/local.py"}  # where actor futures meet the loop


@pytest.mark.parametrize("path", modules("http") + modules("runtime") + modules("evals"), ids=lambda p: p.name)
def test_only_the_runtime_adapters_import_pykka(path: Path) -> None:
    if str(path.relative_to(PACKAGE)) in PYKKA_ADAPTERS:
        return
    assert not any(n == "pykka" or n.startswith("pykka.") for n in runtime_imports(path))


@pytest.mark.parametrize("path", modules("actors") + modules("store") + modules("bridge"), ids=lambda p: p.name)
def test_lower_layers_do_not_import_tornado_or_http(path: Path) -> None:
    bad = {n for n in runtime_imports(path) if n.split(".")[0] == "tornado" or n.startswith("ashd.http")}
    assert not bad


@pytest.mark.parametrize("name", PURE)
def test_pure_core_imports_no_layers(name: str) -> None:
    layers = ("ashd.store", "ashd.actors", "ashd.http", "pykka", "tornado", "sqlalchemy")
    assert not {n for n in runtime_imports(PACKAGE / name) if n.startswith(layers)}

"""docs/architecture.md "Layers": every module of ashd has a place, and imports go one way only.

Every module under ``ashd/`` is parsed with ``ast``; relative imports (``from . import x``,
``from ..store import y``) are resolved to absolute names and function-level imports count;
only ``if TYPE_CHECKING:`` blocks are skipped (annotations do not run). A module may import
its own unit and the units of lower layers; units side by side in one layer may not import
each other, and :data:`BYPASSES` forbids a few lower units (http never imports an actor
module: handlers go through the runtime). Programs of their own (the bridge child, the
client, the MCP server, the scripted model) import only what :data:`PROGRAMS` lists and are
imported only by the units listed there. A module that no entry of :data:`UNITS` covers fails the test: a new package
or top-level module must be given its layer here. Violations are fixed by moving code to the
layer it belongs to, not by widening this map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ashd"

# The layers, lowest first.
LAYERS: list[tuple[str, ...]] = [
    ("version",),  # ashd/__init__.py: __version__ only (the client may read it)
    ("core", "support"),  # pure core | OS and metrics utilities that import nothing of ashd
    ("wire", "store", "snapshot", "proxy"),  # the bridge wire contract is a leaf: nothing of ashd
    ("files", "evals", "runnerlink"),  # runnerlink: the coordinator<->runner WebSocket (wire frames, channels)
    ("sandbox",),
    ("actors",),  # pykka actors: never tornado, never the runtime or http
    ("runtime",),  # the session runtime façade (ashd/runtime/, may not exist yet)
    ("http",),  # Tornado handlers and the services on the IOLoop beside them
    ("daemon",),
    ("cli",),
]

# Separate programs: (units they may import besides their own, units that may import them).
PROGRAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "bridge": (frozenset({"wire", "core", "version"}), frozenset()),  # the child: started with -m
    "client": (frozenset({"version"}), frozenset({"mcp", "cli"})),  # imports nothing of the daemon
    "mcp": (frozenset({"client", "core", "version"}), frozenset({"cli"})),
    "scripted": (frozenset(), frozenset()),  # the scripted model server the tests talk to
}

# Module or package -> unit; a module belongs to its longest entry (``ashd`` matches only itself).
UNITS: dict[str, str] = {
    "ashd": "version",
    **{f"ashd.{name}": "core" for name in (
        "body_policy", "config", "config_checks", "config_sections", "credentials", "deploy", "errors", "events",
        "layout", "lifecycle",
        "limit_fields", "option_fields", "options", "policy", "states", "user_env")},
    **{f"ashd.{name}": "support" for name in ("fdlimit", "loop_task", "mailbox", "metrics", "systemd")},
    "ashd.wire": "wire",
    "ashd.store": "store",
    "ashd.snapshot": "snapshot",
    "ashd.proxy": "proxy",
    "ashd.files": "files",
    "ashd.runnerlink": "runnerlink",
    "ashd.evals": "evals",
    # The eval runner and its model grader run on the IOLoop (tornado's HTTP client) and drive
    # turns through AppContext, like ashd/http/queue_worker.py: they are of the http layer.
    "ashd.evals.runner": "http",
    "ashd.evals.grader": "http",
    "ashd.sandbox": "sandbox",
    "ashd.actors": "actors",
    "ashd.runtime": "runtime",
    "ashd.http": "http",
    "ashd.daemon": "daemon",
    "ashd.listener": "daemon",  # the HTTP listener and IOLoop services as children of the root supervisor
    "ashd.modes": "daemon",  # what each server.mode runs: runtime, root children, servers
    "ashd.runner": "http",  # runner mode: its own Tornado server and its membership (IOLoop services)
    "ashd.service_children": "daemon",  # the store and the sandbox services as the root's first children
    "ashd.cli": "cli",
    "ashd.bridge": "bridge",
    "ashd.client": "client",
    "ashd.mcp": "mcp",
    "ashd.scripted": "scripted",
}

# Third-party frameworks and the only units that may import them.
FRAMEWORKS: dict[str, frozenset[str]] = {
    # no layer below http, no actor; the runner link's two WebSocket ends (ashd/runnerlink/endpoint.py)
    "tornado": frozenset({"http", "daemon", "scripted", "runnerlink"}),
    "pykka": frozenset({"actors", "runtime", "daemon"}),  # handlers never touch an actor
    "sqlalchemy": frozenset({"store"}),
    "psycopg": frozenset({"store"}),  # the fan-out's listening connection (ashd/store/notify.py)
}
# Lower units a unit may still not import: handlers reach actors only through the runtime.
BYPASSES: dict[str, frozenset[str]] = {"http": frozenset({"actors"})}
# Today's exceptions to the two rules above (module -> imports it may still make), each with
# what removes it. Nothing is ever excepted from the layer order itself.
EXCEPTIONS: dict[str, frozenset[str]] = {
}


def rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def unit_of(name: str) -> str | None:
    keys = [k for k in UNITS if name == k or (k != "ashd" and name.startswith(k + "."))]
    return UNITS[max(keys, key=len)] if keys else None


def may_import(unit: str, other: str) -> bool:
    if unit == other:
        return True
    if unit in PROGRAMS:
        return other in PROGRAMS[unit][0]
    if other in PROGRAMS:
        return unit in PROGRAMS[other][1]
    return rank(other) < rank(unit)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Absolute names of everything ``module`` imports at run time (``from a import b`` is
    ``a.b`` when that is a module, else ``a``); relative imports resolved."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{module}: relative import beyond the top-level package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                names.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return names


def excepted(module: str, name: str) -> bool:
    return any(name == e or name.startswith(e + ".") for e in EXCEPTIONS.get(module, ()))


def violations(module: str, imported: set[str]) -> list[str]:
    unit = unit_of(module)
    assert unit is not None, f"{module} has no layer: add it to UNITS in {__file__}"
    found = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if top == "ashd":
            other = unit_of(name)
            if other is None or not may_import(unit, other):
                found.append(f"{module} ({unit}) imports {name} ({other})")
            elif other in BYPASSES.get(unit, ()) and not excepted(module, name):
                found.append(f"{module} ({unit}) imports {name}; {unit} reaches {other} only through the runtime")
        elif top in FRAMEWORKS and unit not in FRAMEWORKS[top] and not excepted(module, top):
            found.append(f"{module} ({unit}) imports {name}; only {', '.join(sorted(FRAMEWORKS[top]))} may")
    return found


MODULES = all_modules()
KNOWN = set(MODULES)


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 150  # the walk found the package
    assert [m for m in MODULES if unit_of(m) is None] == []


def test_every_unit_has_its_place() -> None:
    layered = [u for layer in LAYERS for u in layer]
    assert len(layered) == len(set(layered)) and not set(layered) & set(PROGRAMS)
    assert set(UNITS.values()) == set(layered) | set(PROGRAMS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    path = MODULES[module]
    assert violations(module, imports(path.read_text(), module, path.name == "__init__.py", KNOWN)) == []


def test_relative_imports_are_resolved_and_caught() -> None:
    snippet = (
        "from typing import TYPE_CHECKING\n"
        "from . import rows\n"
        "from .errors import Conflict\n"
        "from .. import wire\n"
        "def later():\n"
        "    from ..http.base import ApiHandler\n"
        "if TYPE_CHECKING:\n"
        "    from ..actors import pool\n"
    )
    known = KNOWN | {"ashd.store.rows", "ashd.store.errors", "ashd.http.base", "ashd.actors.pool"}
    found = imports(snippet, "ashd.store.fake", False, known)
    assert found == {"typing", "ashd.store.rows", "ashd.store.errors", "ashd.wire", "ashd.http.base"}
    assert violations("ashd.store.fake", found) == [
        "ashd.store.fake (store) imports ashd.http.base (http)",
        "ashd.store.fake (store) imports ashd.wire (wire)",  # a sibling of the same layer
    ]
    # In a package's __init__, "." is the package itself.
    assert imports("from .sub import x\n", "ashd.store", True, KNOWN) == {"ashd.store.sub"}


def test_a_new_package_or_program_import_is_caught() -> None:
    assert unit_of("ashd.newthing") is None and unit_of("ashd.newpkg.mod") is None
    assert violations("ashd.actors.fake", {"tornado.web", "ashd.bridge.driver"}) == [
        "ashd.actors.fake (actors) imports ashd.bridge.driver (bridge)",
        "ashd.actors.fake (actors) imports tornado.web; only daemon, http, runnerlink, scripted may",
    ]
    assert violations("ashd.bridge.fake", {"ashd.store", "ashd.wire.protocol"}) == [
        "ashd.bridge.fake (bridge) imports ashd.store (store)"]
    assert violations("ashd.client.fake", {"ashd.errors"}) == ["ashd.client.fake (client) imports ashd.errors (core)"]
    assert violations("ashd.http.fake", {"pykka", "ashd.actors.messages", "ashd.runtime"}) == [
        "ashd.http.fake (http) imports ashd.actors.messages; http reaches actors only through the runtime",
        "ashd.http.fake (http) imports pykka; only actors, daemon, runtime may",
    ]

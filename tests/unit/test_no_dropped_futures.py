"""No dropped futures: an actor call whose future nobody keeps loses its exceptions unlogged.

A call through a pykka proxy is an ask: it returns a future that holds the recipient's
exception. As an expression statement (or a lambda whose caller ignores the result) the
future is dropped and so is the error. Fire-and-forget goes through
``ashd.actors.tell.tell``; asks keep their future and ``.get(timeout=...)`` it.

Without types, "is a proxy" is a naming heuristic over the receiver of the call, matching how
ashd names proxies: ``me``/``owner``/``actor`` and ``*_proxy`` variables, attributes named
``pool``, ``sessions``, ``owner``, ``actor``, ``sandbox_actor`` (``self._deps.pool``,
``self.ctx.tree.sessions``, ``live.owner``), and anything called on ``.proxy()``.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROXY_NAMES = {"me", "owner", "actor"}
PROXY_ATTRIBUTES = {"pool", "sessions", "owner", "actor", "sandbox_actor"}

# Known offenders (module, source line): none. An entry that no longer matches fails the test,
# so none can outlive its fix.
ALLOWED: Counter[tuple[str, str]] = Counter()


def _is_proxy(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "proxy":
        return True
    if isinstance(node, ast.Name):
        return node.id in PROXY_NAMES or node.id.endswith("_proxy")
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_") in PROXY_ATTRIBUTES or node.attr.endswith("_proxy")
    return False


# Helpers that take a ``lambda actor: actor.call(...)`` and ask the future it returns.
FUTURE_TAKERS = {"_starting", "_claimed", "answered"}


def dropped_futures(source: str) -> list[tuple[int, str]]:
    """(line, source line) of every proxy call whose future is dropped."""
    lines = source.splitlines()
    found = []
    tree = ast.parse(source)
    asked = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call) and _name(node.func) in FUTURE_TAKERS
             for arg in node.args if isinstance(arg, ast.Lambda)}
    for node in ast.walk(tree):
        if id(node) in asked:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
        elif isinstance(node, ast.Lambda) and isinstance(node.body, ast.Call):
            call = node.body  # a callback: its caller does not expect a future
        else:
            continue
        if isinstance(call.func, ast.Attribute) and _is_proxy(call.func.value):
            found.append((call.lineno, lines[call.lineno - 1].strip()))
    return sorted(found)


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def test_no_module_drops_an_actor_future() -> None:
    seen: Counter[tuple[str, str]] = Counter()
    offenders = []
    for path in sorted((REPO / "ashd").rglob("*.py")):
        module = path.relative_to(REPO).as_posix()
        for line, text in dropped_futures(path.read_text()):
            seen[(module, text)] += 1
            if seen[(module, text)] > ALLOWED[(module, text)]:
                offenders.append(f"{module}:{line}: {text}")
    assert not offenders, "dropped actor futures (use ashd.actors.tell.tell, or keep and .get() the future):\n" + \
        "\n".join(offenders)
    stale = sorted(key for key, count in ALLOWED.items() if seen[key] < count)
    assert not stale, f"allowlisted offenders that are gone: remove them from ALLOWED: {stale}"


# The offenders named by issue #10 when it was filed, as they were written then.
ISSUE_OFFENDERS = '''
class SessionActor:
    def resume(self):
        self._deps.pool.count_resume(path)

    def begin_turn(self):
        self._deps.pool.mark(started.sandbox_id, SandboxState.RUNNING)

    def end_turn(self):
        self._deps.pool.mark(self._sandbox.sandbox_id, SandboxState.WAITING)
        self.actor_ref.proxy().after_turn()

    def _start_once(self):
        self._deps.pool.mark(spec.sandbox_id, SandboxState.WARM)

class PoolActor:
    def on_start(self):
        def tick():
            while not stop.wait(interval):
                try:
                    me.sweep()
                except pykka.ActorDeadError:
                    return

    def reserve(self, spec, owner):
        ref = SandboxActor.start(spec, self._launcher, lambda fact: me.on_bridge_exited(fact))

    def on_bridge_exited(self, fact):
        live.owner.sandbox_lost(fact)

    def _evict(self, sandbox_id, reason):
        live.owner.evict(sandbox_id, reason)

class SessionSupervisor:
    def prewarm(self, agent, count):
        ref.proxy().warm_up(agent)

    def claim(self, agent):
        self.actor_ref.proxy().prewarm(agent, len(pool) + 1)
'''

FINE = '''
tell(me.sweep, context="idle sweep")
tell(live.owner.evict, sandbox_id, reason, context="eviction")
kept = self._deps.pool.mark(sandbox_id, state)
self._deps.pool.release(sandbox_id).get(timeout=10)
started = sandbox.start_bridge().get(timeout=30)
pool.append((session_id, ref))
ref.stop(block=False)
actor_ping(lambda pool: pool.stats())
'''


def test_the_issue_offenders_are_caught() -> None:
    caught = [text for _, text in dropped_futures(ISSUE_OFFENDERS)]
    assert caught == [
        "self._deps.pool.count_resume(path)",
        "self._deps.pool.mark(started.sandbox_id, SandboxState.RUNNING)",
        "self._deps.pool.mark(self._sandbox.sandbox_id, SandboxState.WAITING)",
        "self.actor_ref.proxy().after_turn()",
        "self._deps.pool.mark(spec.sandbox_id, SandboxState.WARM)",
        "me.sweep()",
        "ref = SandboxActor.start(spec, self._launcher, lambda fact: me.on_bridge_exited(fact))",
        "live.owner.sandbox_lost(fact)",
        "live.owner.evict(sandbox_id, reason)",
        "ref.proxy().warm_up(agent)",
        "self.actor_ref.proxy().prewarm(agent, len(pool) + 1)",
    ]


def test_tells_kept_futures_and_other_objects_pass() -> None:
    assert dropped_futures(FINE) == []

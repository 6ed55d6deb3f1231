"""``ashctl runners``: a coordinator's runner registry (the operator's: docs/scale-out.md).

``ashctl runners`` lists the runners; ``drain ID`` stops new sessions from going to a runner
and moves its live ones to other runners, each at its next idle point (a turn in progress
finishes first; with no other runner taking sessions they stay until one does); ``undrain
ID`` lets it take new sessions again. A drained runner shows ``ACTIVE`` 0 once every session
has left it. Needs an admin key of the default tenant (ASH_API_KEY, the bootstrap key) on the
coordinator.
"""

from __future__ import annotations

import argparse
from typing import Any

from ashd.cli.context import Context, Leaf, emit
from ashd.client.formatting import format_table


def register(commands: Any, leaf: Leaf) -> None:
    text = "list a coordinator's runners, or drain one (no new sessions; live ones move elsewhere)"
    runners = leaf(commands, "runners", _list, text)
    actions = runners.add_subparsers(dest="runners_command", metavar="ACTION", required=False)
    leaf(actions, "list", _list, "list the registered runners (the default)")
    leaf(actions, "drain", _drain, "send no new sessions to this runner and move its live ones to others, "
         "each at its next idle point").add_argument("runner_id", metavar="ID")
    leaf(actions, "undrain", _undrain, "let a drained runner take new sessions again").add_argument(
        "runner_id", metavar="ID")


def _list(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.list_runners()
    rows = [runner_row(r) for r in answer.get("runners") or []]
    table = format_table(("ID", "ADDRESS", "CAPACITY", "ACTIVE", "WARMING", "HEARTBEAT", "GEN", "DRAINING"), rows)
    return emit(ctx, answer, table if rows else "(no runners registered)")


def runner_row(runner: dict[str, Any]) -> tuple[Any, ...]:
    age = runner.get("lastHeartbeatAgeS")
    heard = f"{age:.1f}s ago" if isinstance(age, int | float) else runner.get("lastHeartbeat", "-")
    if runner.get("alive") is False:
        heard += " (dead)"
    return (runner.get("runnerId"), f"{runner.get('host')}:{runner.get('port')}", runner.get("max"),
            runner.get("active"), runner.get("warming", "-"), heard, runner.get("generation", "-"),
            "yes" if runner.get("draining") else "no")


def _drain(args: argparse.Namespace, ctx: Context) -> int:
    runner = ctx.client.drain_runner(args.runner_id, True)
    return emit(ctx, {"runner": runner}, f"runner {args.runner_id} is draining: no new sessions go to it, and "
                                         "its live sessions move to other runners, each at its next idle point "
                                         "(see ACTIVE in `ashctl runners`)")


def _undrain(args: argparse.Namespace, ctx: Context) -> int:
    runner = ctx.client.drain_runner(args.runner_id, False)
    return emit(ctx, {"runner": runner}, f"runner {args.runner_id} takes new sessions again")

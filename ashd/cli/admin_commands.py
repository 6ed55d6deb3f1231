"""``ashctl keys|credentials|usage|analytics|queue|config``: the tenant's administration.

Secrets never travel on the command line (where ``ps`` shows them): a credential's key
is read from stdin or a file, and a new API key is printed once, on stdout.
"""

from __future__ import annotations

import argparse
from typing import Any

from ashd.cli.context import Context, Leaf, emit, read_input
from ashd.client.formatting import format_pairs, format_table

SCOPES = ("admin", "write", "read")
CREDENTIAL_TYPES = ("anthropic", "openai", "bedrock", "custom")
QUEUE_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")


def register(commands: Any, leaf: Leaf) -> None:
    """Add the top-level command groups."""
    keys = _group(commands, "keys", "manage this tenant's API keys")
    leaf(keys, "list", _keys_list, "list API keys (never the keys themselves)")
    sub = leaf(keys, "create", _keys_create, "mint an API key; prints it once")
    sub.add_argument("--label", help="what the key is for")
    sub.add_argument("--scope", action="append", choices=SCOPES, dest="scopes",
                     help="grant this scope (repeatable; default: the server's)")
    leaf(keys, "delete", _keys_delete, "revoke an API key").add_argument("key_id", metavar="KEY_ID")

    creds = _group(commands, "credentials", "manage stored upstream credentials (encrypted at rest)")
    leaf(creds, "list", _creds_list, "list credentials (never the secrets)")
    sub = leaf(creds, "add", _creds_add, "store a credential; the key is read from stdin or --key-file")
    sub.add_argument("type", choices=CREDENTIAL_TYPES)
    sub.add_argument("--label", help="a name for it")
    sub.add_argument("--key-file", metavar="FILE", default="-", help="file holding the key (default: stdin)")
    leaf(creds, "delete", _creds_delete, "delete a credential").add_argument("credential_id", metavar="ID")

    sub = leaf(commands, "usage", _usage, "show metered usage (tokens, tool calls, cost)")
    sub.add_argument("--session", metavar="ID", help="only this session")
    sub.add_argument("--agent", metavar="NAME", help="only this agent")
    sub.add_argument("--after", metavar="TIME", help="ISO-8601 start (exclusive)")
    sub.add_argument("--before", metavar="TIME", help="ISO-8601 end (exclusive)")
    sub.add_argument("--events", action="store_true", help="list the events instead of totals")

    sub = leaf(commands, "analytics", _analytics,
               "show the tenant's figures: agents, sessions, messages, tokens, cost, turn latency, evals")
    sub.add_argument("--after", metavar="TIME", help="ISO-8601 start with a time zone (exclusive)")
    sub.add_argument("--before", metavar="TIME", help="ISO-8601 end with a time zone (exclusive)")

    queue = _group(commands, "queue", "queue prompts for the background worker")
    sub = leaf(queue, "add", _queue_add, "queue a prompt")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("prompt", metavar="PROMPT", help='the prompt ("-" reads stdin)')
    sub.add_argument("--session", metavar="ID", help="run it in this session (default: a new one)")
    sub.add_argument("--priority", type=int, help="higher runs first (default 0)")
    sub.add_argument("--max-retries", type=int, help="retries after a failure (default 3)")
    leaf(queue, "list", _queue_list, "list queued prompts").add_argument("--status", choices=QUEUE_STATUSES)
    leaf(queue, "stats", _queue_stats, "count queued prompts by status")
    leaf(queue, "info", _queue_info, "show one queued prompt").add_argument("item_id", metavar="ID")
    leaf(queue, "cancel", _queue_cancel, "cancel a pending prompt").add_argument("item_id", metavar="ID")

    config = _group(commands, "config", "show ashctl's own settings")
    leaf(config, "show", _config_show, "where ashctl connects and which key it uses (masked)")


def _group(commands: Any, name: str, help: str) -> Any:
    return commands.add_parser(name, help=help, description=help).add_subparsers(
        dest=f"{name}_command", metavar="ACTION", required=True)


def _keys_list(args: argparse.Namespace, ctx: Context) -> int:
    keys = ctx.client.list_keys()
    rows = [(k.get("id"), k.get("keyPrefix") or "-", k.get("label"), " ".join(k.get("scopes") or []),
             k.get("createdAt")) for k in keys]
    return emit(ctx, {"keys": keys}, format_table(("ID", "PREFIX", "LABEL", "SCOPES", "CREATED"), rows))


def _keys_create(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.create_key(args.label, args.scopes)
    if not ctx.json:
        ctx.err.write(f"key {answer.get('id')} ({' '.join(answer.get('scopes') or [])}); "
                      "store it now, it is not shown again\n")
    return emit(ctx, answer, str(answer.get("key")))


def _keys_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_key(args.key_id)
    return emit(ctx, {"deleted": True, "id": args.key_id}, f"revoked key {args.key_id}")


def _creds_list(args: argparse.Namespace, ctx: Context) -> int:
    creds = ctx.client.list_credentials()
    rows = [(c.get("id"), c.get("type"), c.get("label"), c.get("active"), c.get("lastUsedAt")) for c in creds]
    return emit(ctx, {"credentials": creds}, format_table(("ID", "TYPE", "LABEL", "ACTIVE", "LAST USED"), rows))


def _creds_add(args: argparse.Namespace, ctx: Context) -> int:
    key = read_input(args.key_file).decode().strip()
    credential = ctx.client.add_credential(args.type, key, args.label)
    return emit(ctx, {"credential": credential}, str(credential.get("id")))


def _creds_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_credential(args.credential_id)
    return emit(ctx, {"deleted": True, "id": args.credential_id}, f"deleted credential {args.credential_id}")


def _usage(args: argparse.Namespace, ctx: Context) -> int:
    filters = {"session_id": args.session, "agent_name": args.agent, "after": args.after, "before": args.before}
    if args.events:
        events = ctx.client.usage(**filters)
        rows = [(e.get("createdAt"), e.get("sessionId"), e.get("eventType"), e.get("value")) for e in events]
        return emit(ctx, {"events": events}, format_table(("AT", "SESSION", "TYPE", "VALUE"), rows))
    stats = ctx.client.usage_stats(**filters)
    return emit(ctx, {"stats": stats}, format_pairs(stats))


def _analytics(args: argparse.Namespace, ctx: Context) -> int:
    figures = ctx.client.analytics(args.after, args.before)
    return emit(ctx, figures, format_pairs(analytics_lines(figures)))


def analytics_lines(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures as flat ``section.name`` pairs (``sessions.byStatus.active``) for reading."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = "-" if value is None or value == {} else value

    walk("", figures)
    return flat


def _queue_add(args: argparse.Namespace, ctx: Context) -> int:
    prompt = read_input("-").decode() if args.prompt == "-" else args.prompt
    item = ctx.client.enqueue(args.agent, prompt, session_id=args.session, priority=args.priority,
                              max_retries=args.max_retries)
    return emit(ctx, {"item": item}, str(item.get("id")))


def _queue_list(args: argparse.Namespace, ctx: Context) -> int:
    items = ctx.client.list_queue(args.status)
    rows = [(i.get("id"), i.get("agentName"), i.get("status"), i.get("priority"), i.get("retryCount"),
             i.get("sessionId")) for i in items]
    return emit(ctx, {"items": items}, format_table(("ID", "AGENT", "STATUS", "PRIO", "RETRIES", "SESSION"), rows))


def _queue_stats(args: argparse.Namespace, ctx: Context) -> int:
    stats = ctx.client.queue_stats()
    return emit(ctx, {"stats": stats}, format_pairs(stats))


def _queue_info(args: argparse.Namespace, ctx: Context) -> int:
    item = ctx.client.queue_item(args.item_id)
    return emit(ctx, {"item": item}, format_pairs(item))


def _queue_cancel(args: argparse.Namespace, ctx: Context) -> int:
    item = ctx.client.cancel_queue_item(args.item_id)
    return emit(ctx, {"item": item}, f"queue item {args.item_id} is {item.get('status')}")


def _config_show(args: argparse.Namespace, ctx: Context) -> int:
    target = ctx.target
    key = target.api_key if target else None
    shown = {
        "server": target.url if target else ctx.client.base_url,
        "apiKey": (key[:8] + "…" + f" ({len(key)} chars)") if key else None,
        "apiKeySource": target.key_source if target else None,
        "json": ctx.json,
    }
    return emit(ctx, shown, format_pairs({k: ("-" if v is None else v) for k, v in shown.items()}))

"""``ashctl session ...`` beyond create/list/send: fork, interrupt, tail, events, logs, exec,
and the workspace's files. Each handler is one request (or one stream) through the client.
"""

from __future__ import annotations

import argparse
from pathlib import Path, PurePosixPath
from typing import Any

from ashd.cli.context import EXIT_SERVER_ERROR, EXIT_USAGE, SESSION_ID, Context, Leaf, emit, progress, read_input
from ashd.client.display import make_printer
from ashd.client.formatting import format_table

TIMELINE = ("text", "tool_start", "tool_result", "reasoning", "turn_complete", "error", "lifecycle")


def register(group: Any, leaf: Leaf) -> None:
    """Add the commands to the ``session`` sub-command group."""
    def with_id(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub = leaf(group, name, handler, help)
        sub.add_argument("id", metavar="ID", help=SESSION_ID)
        return sub

    with_id("fork", _fork, "fork a session: a new paused session with its files and conversation")
    with_id("interrupt", _interrupt, "stop the turn running in a session")
    sub = with_id("tail", _tail, "print a session's stream: stored events, then every turn live until Ctrl-C")
    sub.add_argument("--after", type=int, metavar="ID", default=0, help="only events after this event id")
    sub.add_argument("--until-done", action="store_true",
                     help="stop at the next done (the end of the first turn printed)")
    sub.add_argument("--thinking", action="store_true", help="show thinking (dimmed)")
    sub = with_id("events", _events, "show a session's timeline events")
    sub.add_argument("--limit", type=int, help="at most this many (server default 200)")
    sub.add_argument("--after", type=int, metavar="SEQ", help="only after this sequence")
    sub.add_argument("--type", choices=TIMELINE, help="only events of this type")
    sub = with_id("logs", _logs, "show the sandbox's recent log lines")
    sub.add_argument("--after", type=int, metavar="INDEX", help="only lines after this index")
    sub = with_id("exec", _exec, "run a shell command inside the session's sandbox; exits with its status")
    sub.add_argument("command", metavar="COMMAND", help="shell command (quote it)")
    sub.add_argument("--timeout", type=float, metavar="SECONDS", help="kill it after this long (max 300)")
    sub = with_id("files", _files, "list the workspace's files, or print one (-o saves it)")
    sub.add_argument("path", metavar="PATH", nargs="?", help="a file in the workspace")
    sub.add_argument("-o", "--output", metavar="FILE", help="write the file here instead of stdout")
    sub.add_argument("--no-hidden", action="store_true", help="leave out dot-files when listing")
    sub = with_id("put", _put, "upload local files into the workspace")
    sub.add_argument("local", metavar="FILE", nargs="+", help="local files")
    sub.add_argument("--to", metavar="DIR", help="workspace directory to put them in (default: top)")
    sub = with_id("rm", _rm, "delete a file from the workspace")
    sub.add_argument("path", metavar="PATH", help="a file in the workspace")
    sub = with_id("download", _download, "save the workspace as a .tar.gz bundle")
    sub.add_argument("-o", "--output", metavar="FILE", required=True, help="bundle to write ('-': stdout)")
    sub = with_id("upload", _upload, "extract a .tar.gz bundle into the workspace")
    sub.add_argument("bundle", metavar="FILE", help="the .tar.gz bundle ('-': stdin)")


def _fork(args: argparse.Namespace, ctx: Context) -> int:
    child = ctx.client.fork_session(args.id)
    return emit(ctx, {"session": child}, str(child.get("id")))


def _interrupt(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.interrupt(args.id)
    return emit(ctx, answer, f"interrupted the turn of session {args.id}")


def _tail(args: argparse.Namespace, ctx: Context) -> int:
    printer = make_printer(ctx.out, ctx.err, as_json=ctx.json, show_thinking=args.thinking,
                           no_color="NO_COLOR" in ctx.environ)
    try:
        for event in ctx.client.follow(args.id, after=args.after, until_done=args.until_done):
            printer.handle(event)
    finally:
        printer.finish()
    return EXIT_SERVER_ERROR if printer.failed else 0


def _events(args: argparse.Namespace, ctx: Context) -> int:
    events = ctx.client.list_events(args.id, args.limit, args.after, args.type)
    rows = [(e.get("sequence"), e.get("type"), e.get("createdAt"), str(e.get("data", ""))[:80]) for e in events]
    return emit(ctx, {"events": events}, format_table(("SEQ", "TYPE", "AT", "DATA"), rows))


def _logs(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.logs(args.id, args.after)
    lines = [f"{line.get('index')} {line.get('level')}: {line.get('text')}" for line in answer.get("logs", [])]
    return emit(ctx, answer, "\n".join(lines) if lines else "(no log lines)")


def _exec(args: argparse.Namespace, ctx: Context) -> int:
    if args.timeout is not None and not 0 < args.timeout <= 300:
        ctx.err.write("ashctl: error: --timeout must be between 0 and 300 seconds\n")
        return EXIT_USAGE
    timeout_ms = int(args.timeout * 1000) if args.timeout is not None else None
    result = ctx.client.exec(args.id, args.command, timeout_ms)
    if ctx.json:
        emit(ctx, result, "")
    else:
        ctx.out.write(str(result.get("stdout", "")))
        ctx.err.write(str(result.get("stderr", "")))
    code = result.get("exitCode")
    return code if isinstance(code, int) and 0 <= code < 256 else EXIT_SERVER_ERROR


def _files(args: argparse.Namespace, ctx: Context) -> int:
    if args.path is None:
        answer = ctx.client.list_files(args.id, include_hidden=not args.no_hidden)
        rows = [(f.get("path"), f.get("size"), f.get("modifiedAt")) for f in answer.get("files", [])]
        return emit(ctx, answer, format_table(("PATH", "SIZE", "MODIFIED"), rows))
    with progress(ctx, args.path):
        data = ctx.client.read_file(args.id, args.path)
    return _write_output(ctx, data, args.output)


def _put(args: argparse.Namespace, ctx: Context) -> int:
    files = {Path(local).name: read_input(local) for local in args.local}
    with progress(ctx, f"uploading {len(files)} file(s)"):
        results = ctx.client.write_files(args.id, files, args.to)
    failed = [r for r in results if not r.get("written")]
    lines = [f"{r.get('path')}: {'written' if r.get('written') else r.get('error')}" for r in results]
    emit(ctx, {"files": results}, "\n".join(lines))
    return EXIT_SERVER_ERROR if failed else 0


def _rm(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.delete_file(args.id, args.path)
    return emit(ctx, answer, f"deleted {PurePosixPath(args.path)}")


def _download(args: argparse.Namespace, ctx: Context) -> int:
    with progress(ctx, "downloading workspace"):
        bundle = ctx.client.download_workspace(args.id)
    return _write_output(ctx, bundle, args.output)


def _upload(args: argparse.Namespace, ctx: Context) -> int:
    with progress(ctx, "uploading bundle"):
        answer = ctx.client.upload_workspace(args.id, read_input(args.bundle))
    return emit(ctx, answer, str(answer.get("message", "uploaded")))


def _write_output(ctx: Context, data: bytes, output: str | None) -> int:
    if output in (None, "-"):
        ctx.out.flush()
        target = getattr(ctx.out, "buffer", None)
        if target is not None:
            target.write(data)
            target.flush()
        else:
            ctx.out.write(data.decode("utf-8", "replace"))
        return 0
    Path(output).write_bytes(data)
    ctx.err.write(f"wrote {len(data)} bytes to {output}\n")
    return 0


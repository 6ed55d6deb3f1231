"""``ashctl``: command-line client for an ashd (or Ash) server.

:func:`build_parser` has no side effects (no environment, files or network),
so argparse-manpage can call it to generate ``man/ashctl.1``. :func:`main`
is the console-script entry point; :func:`run` is the same with explicit
streams and environment. Runs on the calling thread and blocks on the network.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ashd.cli import admin_commands, eval_commands, mcp_command, option_flags, runner_commands, session_commands
from ashd.cli.context import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVER_ERROR,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SESSION_ID,
    Context,
    Handler,
)
from ashd.cli.context import emit as _emit
from ashd.client.agent_files import AgentFolderError, collect_agent_files
from ashd.client.client import AshdClient
from ashd.client.discovery import DEFAULT_SERVER_URL, Target, missing_key_hint, resolve_target
from ashd.client.display import make_printer
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.formatting import (
    format_isolation,
    format_pairs,
    format_start_health,
    format_supervision,
    format_table,
    message_line,
    sentence_case,
)

_ID = SESSION_ID

EPILOG = f"""\
Global options may also follow the command: ashctl session list --json.

exit status:
  0    success
  1    the server answered with an error (4xx/5xx), or the turn failed
       (an error event, or a result marked is_error); session exec exits
       with the remote command's own status instead
  2    usage error: bad arguments, or an agent folder that cannot be uploaded,
       or ashctl mcp without the MCP package (pip install 'ashd[mcp]')
  3    cannot connect to the server (or it dropped the stream),
       or no API key was found
  130  interrupted (Ctrl-C)
  141  the reader of stdout went away (e.g. | head)

environment:
  ASH_SERVER_URL  server URL (default {DEFAULT_SERVER_URL})
  ASH_API_KEY     API key (sent as a Bearer token)
  ASH_DATA_DIR    ashd's data directory: its initial-api-key file is the key
                  when none is given (then ./data, then /var/lib/ashd;
                  only for a server on this machine)
"""


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _env_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("-e", "--env", metavar="K=V", type=_env_pair, action="append",
                        default=[], help=help)


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Sub-commands accept the same flags after the command name, undocumented there
    # (the top-level help covers them); SUPPRESS keeps their absence from
    # overwriting a value given before the command.
    def text(help: str) -> str:
        return help if top else argparse.SUPPRESS

    unset = None if top else argparse.SUPPRESS
    parser.add_argument("--server", metavar="URL", default=unset,
                        help=text(f"server URL (env ASH_SERVER_URL, default {DEFAULT_SERVER_URL})"))
    parser.add_argument("--api-key", metavar="KEY", default=unset,
                        help=text("API key (env ASH_API_KEY, else the bootstrap key file)"))
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help=text("print raw JSON (streams: one JSON object per event)"))


def build_parser() -> argparse.ArgumentParser:
    """Build the ``ashctl`` argument parser; pure (safe for man-page generation)."""
    parser = argparse.ArgumentParser(
        prog="ashctl", description="Deploy agents to an ashd server and talk to them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_global_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, top=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def leaf(group: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, description=help,
                                                        parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    def streaming(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("message", metavar="MESSAGE", help='the prompt ("-" reads stdin)')
        sub.add_argument("--thinking", action="store_true", help="show thinking (dimmed)")
        sub.add_argument("--model", help="model for this turn")
        option_flags.add_turn_flags(sub)

    leaf(commands, "health", _cmd_health, "show server health")
    leaf(commands, "doctor", _cmd_doctor, "show which isolation layers the server has (exit 1 below its floor)")
    sub = leaf(commands, "deploy", _cmd_deploy, "upload an agent folder (needs CLAUDE.md)")
    sub.add_argument("path", metavar="PATH", help="agent folder")
    sub.add_argument("-n", "--name", help="agent name (default: the folder's name)")
    _env_option(sub, "agent environment variable (repeatable)")

    agent = commands.add_parser("agent", help="manage agents").add_subparsers(
        dest="agent_command", metavar="ACTION", required=True)
    leaf(agent, "list", _cmd_agent_list, "list agents")
    for name, handler, text in (("info", _cmd_agent_info, "show one agent"),
                                ("delete", _cmd_agent_delete, "delete an agent and its sessions")):
        leaf(agent, name, handler, text).add_argument("name", metavar="NAME", help="agent name")

    session = commands.add_parser("session", help="manage sessions").add_subparsers(
        dest="session_command", metavar="ACTION", required=True)
    sub = leaf(session, "create", _cmd_session_create, "start a session; prints its id")
    sub.add_argument("agent", metavar="AGENT", help="agent name")
    sub.add_argument("--model", help="model for the session")
    sub.add_argument("--system-prompt", help="replace the agent's CLAUDE.md prompt")
    _env_option(sub, "extra environment variable for the sandbox (repeatable)")
    option_flags.add_session_flags(sub)
    leaf(session, "list", _cmd_session_list, "list sessions").add_argument(
        "--agent", help="only this agent's sessions")
    for name, text in (("info", "show one session"), ("end", "end a session for good"),
                       ("stop", "stop a session (sandbox destroyed, resumable)"),
                       ("pause", "pause a session (sandbox kept warm)"),
                       ("resume", "resume a stopped or paused session")):
        leaf(session, name, _cmd_session_state, text).add_argument("id", metavar="ID", help=_ID)
    sub = leaf(session, "send", _cmd_session_send, "send a message; streams the answer")
    sub.add_argument("id", metavar="ID", help=_ID)
    streaming(sub)
    sub = leaf(session, "messages", _cmd_session_messages, "show a session's stored messages")
    sub.add_argument("id", metavar="ID", help=_ID)
    sub.add_argument("--limit", type=int, help="at most this many (server default 100)")
    sub.add_argument("--after", type=int, metavar="SEQ", help="only after this sequence")

    sub = leaf(commands, "chat", _cmd_chat, "send one message to an agent (new session unless -s)")
    sub.add_argument("agent", metavar="AGENT", help="agent name")
    streaming(sub)
    sub.add_argument("-s", "--session", metavar="ID", help="continue this session")
    sub.add_argument("--end", action="store_true", help="end the session afterwards")
    session_commands.register(session, leaf)
    admin_commands.register(commands, leaf)
    mcp_command.register(commands, leaf)
    eval_commands.register(commands, leaf)
    runner_commands.register(commands, leaf)
    return parser


# -- command handlers ----------------------------------------------------------


def _cmd_health(args: argparse.Namespace, ctx: Context) -> int:
    health = ctx.client.health()
    return _emit(ctx, health, format_pairs(health))


def _cmd_doctor(args: argparse.Namespace, ctx: Context) -> int:
    """Isolation layers, the health of sandbox starts and the supervision tree; exit 1 below
    the floor, degraded, or with a failed child of the tree."""
    health = ctx.client.health()
    report = health.get("isolation") or {}
    status = {key: health.get(key) for key in ("status", "statusReason", "lastStartFailure", "supervision")}
    if ctx.json:
        _emit(ctx, {**report, **status}, "")
    else:
        ctx.out.write(format_isolation(report) + "\n" + format_start_health(health) + "\n"
                      + format_supervision(health.get("supervision") or {}) + "\n")
    healthy = health.get("status") == "ok" and not (health.get("supervision") or {}).get("failedChildren")
    return EXIT_OK if report.get("meetsFloor") and healthy else EXIT_SERVER_ERROR


def _cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    folder = Path(args.path)
    name = args.name or folder.resolve().name
    files = collect_agent_files(folder)
    agent = ctx.client.deploy_agent(name, files=[f.to_json() for f in files], env=dict(args.env))
    size = sum(f.size for f in files)
    return _emit(ctx, {"agent": agent}, f"deployed agent {agent.get('name', name)} version "
                 f"{agent.get('version', '?')} ({len(files)} files, {size / 1024:.1f} KiB)")


def _cmd_agent_list(args: argparse.Namespace, ctx: Context) -> int:
    agents = ctx.client.list_agents()
    rows = [(a.get("name"), a.get("version"), a.get("updatedAt")) for a in agents]
    return _emit(ctx, {"agents": agents}, format_table(("NAME", "VERSION", "UPDATED"), rows))


def _cmd_agent_info(args: argparse.Namespace, ctx: Context) -> int:
    agent = ctx.client.get_agent(args.name)
    return _emit(ctx, {"agent": agent}, format_pairs(agent))


def _cmd_agent_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_agent(args.name)
    return _emit(ctx, {"ok": True}, f"deleted agent {args.name}")


def _cmd_session_create(args: argparse.Namespace, ctx: Context) -> int:
    session = ctx.client.create_session(args.agent, model=args.model,
                                        system_prompt=args.system_prompt,
                                        extra_env=dict(args.env) or None, **option_flags.session_options(args))
    return _emit(ctx, {"session": session}, str(session.get("id")))


def _cmd_session_list(args: argparse.Namespace, ctx: Context) -> int:
    sessions = ctx.client.list_sessions(args.agent)
    rows = [(s.get("id"), s.get("agentName"), s.get("status"), s.get("runtime", "-"), s.get("createdAt"))
            for s in sessions]
    return _emit(ctx, {"sessions": sessions},
                 format_table(("ID", "AGENT", "STATUS", "RUNTIME", "CREATED"), rows))


def _cmd_session_state(args: argparse.Namespace, ctx: Context) -> int:
    call = {"info": ctx.client.get_session, "end": ctx.client.end_session,
            "stop": ctx.client.stop_session, "pause": ctx.client.pause_session,
            "resume": ctx.client.resume_session}[args.session_command]
    session = call(args.id)
    human = (format_pairs(session) if args.session_command == "info"
             else f"session {session.get('id', args.id)} is {session.get('status')}")
    return _emit(ctx, {"session": session}, human)


def _cmd_session_messages(args: argparse.Namespace, ctx: Context) -> int:
    messages = ctx.client.list_messages(args.id, args.limit, args.after)
    lines = [message_line(m) for m in messages]
    return _emit(ctx, {"messages": messages}, "\n".join(lines) if lines else "(no messages)")


def _cmd_chat(args: argparse.Namespace, ctx: Context) -> int:
    session_id = args.session or str(ctx.client.create_session(args.agent, model=args.model).get("id"))
    try:
        return _stream_turn(args, ctx, session_id)
    finally:
        if args.end:
            _end_quietly(ctx, session_id)
        else:
            ctx.err.write(f"session {session_id} (continue with: ashctl chat {args.agent} "
                          f"MESSAGE -s {session_id})\n")


def _end_quietly(ctx: Context, session_id: str) -> None:
    try:
        ctx.client.end_session(session_id)
        ctx.err.write(f"session {session_id} ended\n")
    except (AshdError, AshdConnectionError) as exc:
        ctx.err.write(f"ashctl: warning: could not end session {session_id}: {exc}\n")


def _cmd_session_send(args: argparse.Namespace, ctx: Context) -> int:
    return _stream_turn(args, ctx, args.id)


def _stream_turn(args: argparse.Namespace, ctx: Context, session_id: str) -> int:
    content = sys.stdin.read() if args.message == "-" else args.message
    printer = make_printer(ctx.out, ctx.err, as_json=ctx.json, show_thinking=args.thinking,
                           no_color="NO_COLOR" in ctx.environ)
    try:
        for event in ctx.client.send_message(session_id, content, model=args.model,
                                             **option_flags.turn_options(args)):
            printer.handle(event)
    finally:
        printer.finish()
    return EXIT_SERVER_ERROR if printer.failed else EXIT_OK


# -- entry points ----------------------------------------------------------------


def _server_error(exc: AshdError, target: Target, err: TextIO) -> int:
    if exc.status_code == 401 and target.api_key is None:
        err.write(f"ashctl: error: {missing_key_hint(target)}\n")
        return EXIT_UNREACHABLE
    origin = f" (key from {target.key_source})" if exc.status_code == 401 else ""
    err.write(f"ashctl: error: {sentence_case(exc.message)} ({exc.status_code}){origin}\n")
    return EXIT_SERVER_ERROR


def run(argv: Sequence[str] | None, out: TextIO, err: TextIO,
        environ: Mapping[str, str], cwd: Path | None = None) -> int:
    """Parse ``argv``, run the command, and return the exit status (never raises SystemExit)."""
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    target = resolve_target(args.server, args.api_key, environ, cwd)
    try:
        client = AshdClient(target.url, target.api_key)
    except ValueError as exc:
        parser.print_usage(err)
        err.write(f"ashctl: error: {exc}\n")
        return EXIT_USAGE
    ctx = Context(client, args.json, out, err, environ, target)
    try:
        code: int = args.handler(args, ctx)
        return code
    except AshdError as exc:
        return _server_error(exc, target, err)
    except AshdConnectionError as exc:
        err.write(f"ashctl: error: {exc}\n")
        return EXIT_UNREACHABLE
    except AgentFolderError as exc:
        err.write(f"ashctl: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("ashctl: interrupted\n")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: ``sys.exit(main())``. Main thread only."""
    # Python leaves SIGINT alone when it starts ignored (a background job of a non-interactive
    # shell, some CI runners); Ctrl-C must still stop ashctl, with status 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = run(argv, sys.stdout, sys.stderr, os.environ)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        # The reader went away (`ashctl ... | head`); silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())

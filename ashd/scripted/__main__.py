"""``ashd-scripted-model`` / ``python -m ashd.scripted``: run the scripted model server.

Prints ``scripted model listening on http://HOST:PORT`` once bound, then serves until
SIGTERM or SIGINT, and exits 0. Exit status 2 for bad arguments or an unusable script,
1 when the address cannot be bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ashd.scripted.script import ScriptError
from ashd.scripted.server import ScriptedModel

DEFAULT_PORT = 4199


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (no side effects)."""
    parser = argparse.ArgumentParser(
        prog="ashd-scripted-model",
        description="Messages-API-compatible server that answers from [[directives]] in "
        "prompts (or a script file), for running Claude Code offline and deterministically.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to bind, 0 for an ephemeral one (default: %(default)s)",
    )
    parser.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help='JSON list of {"match": substring|null, "reply": directive text}',
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        metavar="FILE",
        help="write the bound port number to FILE once listening",
    )
    parser.add_argument(
        "--input-tokens",
        type=int,
        default=100,
        help="input_tokens reported per response (default: %(default)s)",
    )
    parser.add_argument(
        "--output-tokens",
        type=int,
        default=20,
        help="output_tokens reported per response (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT. Blocks; must be called on the main thread."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        model = ScriptedModel(args.input_tokens, args.output_tokens, args.script)
    except ScriptError as exc:
        print(f"ashd-scripted-model: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        url = model.start(args.host, args.port)
    except OSError as exc:
        print(
            f"ashd-scripted-model: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    if args.port_file is not None:
        _write_port_file(args.port_file, url.rsplit(":", 1)[1])
    print(f"scripted model listening on {url}", flush=True)
    while not stop.wait(1.0):
        pass
    model.stop()
    return 0


def _write_port_file(path: Path, port: str) -> None:
    """Write ``port`` atomically, so a reader never sees a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(port + "\n", encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())

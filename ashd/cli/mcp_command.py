"""``ashctl mcp``: serve the server's agents as MCP tools on stdin/stdout.

The ``mcp`` package (the ``mcp`` extra) is imported only when this command runs,
so every other command, and ``pip install ashd`` alone, need only the standard library.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ashd.cli.context import EXIT_OK, EXIT_USAGE, Context, Leaf

HELP = "serve the server's agents as tools of an MCP server on stdin/stdout (needs ashd[mcp])"
MISSING = ("ashctl: error: ashctl mcp needs the MCP Python SDK, which is not installed "
           "({reason}).\nInstall it with: pip install 'ashd[mcp]'\n")


def register(commands: Any, leaf: Leaf) -> None:
    """Add ``mcp`` to ashctl's top-level commands."""
    leaf(commands, "mcp", _cmd_mcp, HELP)


def _cmd_mcp(args: argparse.Namespace, ctx: Context) -> int:
    try:
        import mcp  # noqa: F401  first, so that a missing extra is reported by its own name

        from ashd.mcp.server import serve
    except ImportError as exc:
        ctx.err.write(MISSING.format(reason=exc))
        return EXIT_USAGE
    # stdout is the protocol's; warnings and tracebacks of failed tool calls go to stderr.
    logging.basicConfig(level=logging.WARNING, stream=ctx.err,
                        format="ashctl mcp: %(levelname)s %(name)s: %(message)s")
    assert ctx.target is not None  # run() always resolves one
    serve(ctx.target)
    return EXIT_OK

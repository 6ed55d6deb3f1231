"""``ashd``: run the daemon. ``build_parser()`` has no side effects (argparse-manpage uses it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from ashd import __version__
from ashd import config as configuration
from ashd.cli.port_check import port_conflict
from ashd.errors import ConfigError

MISSING_DEPENDENCIES = ("ashd: the daemon's dependencies are not installed ({name} is missing); "
                        "install them with: pip install 'ashd[daemon]'")

EPILOG = """\
configuration, lowest to highest precedence: built-in defaults, the TOML file given by
--config (or $ASHD_CONFIG), environment variables (ASH_PORT, ASH_HOST, ASH_DATA_DIR,
ASH_DATABASE_URL, ASH_API_KEY, ASH_MAX_SANDBOXES, ASH_IDLE_TIMEOUT_MS, ANTHROPIC_BASE_URL,
ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, ...), then these flags.

modes (--mode, ASH_MODE): standalone serves the API with local sandboxes; coordinator serves
the API and the runner registry (ASH_INTERNAL_SECRET, a shared Postgres); runner hosts
sandboxes for the coordinators (ASH_SERVER_URL, ASH_RUNNER_ID, ASH_RUNNER_PORT,
ASH_INTERNAL_SECRET) and serves only /runner/* on its own port. See docs/scale-out.md.

exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a start-up failure,
2 on invalid configuration or usage, 3 when the supervision tree gave up (a long-lived
actor kept crashing; systemd's Restart=on-failure starts ashd again).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ashd",
        description="Serve Claude agent folders as an Ash-compatible REST + SSE API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument("--mode", choices=configuration.MODES,
                        help="standalone (default), coordinator or runner (docs/scale-out.md)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 4100)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="state directory (default ./data)")
    parser.add_argument("--database-url", metavar="URL", help="sqlite:///... or postgresql+psycopg://...")
    parser.add_argument("--log-level", choices=configuration.LOG_LEVELS, help="default info")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (secrets masked) and exit")
    parser.add_argument("--version", action="version", version=f"ashd {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_file = args.config or (Path(os.environ["ASHD_CONFIG"]) if os.environ.get("ASHD_CONFIG") else None)
    try:
        config = configuration.load(
            file=config_file,
            flags={
                "server.mode": args.mode,
                "server.host": args.host,
                "server.port": args.port,
                "data_dir": args.data_dir,
                "store.database_url": args.database_url,
                "log_level": args.log_level,
            },
        )
    except ConfigError as exc:
        print(f"ashd: configuration error: {exc.message}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(configuration.describe(config), indent=2))
        return 0
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from ashd.fdlimit import raise_nofile

    raise_nofile(config.proxy.max_connections_per_sandbox)  # before anything is opened
    try:
        from ashd.actors.replies import quiet_expected_errors
        from ashd.daemon import Daemon  # the heavy part: only the daemon needs it
    except ModuleNotFoundError as exc:
        print(MISSING_DEPENDENCIES.format(name=exc.name), file=sys.stderr)
        return 1
    # A runner serves only its own port (cluster.runner_port); the others the public API's.
    host, port = ((config.cluster.runner_host, config.cluster.runner_port) if config.server.mode == "runner"
                  else (config.server.host, config.server.port))
    conflict = port_conflict(host, port)
    if conflict is not None:  # before the data dir, the database or any sandbox is touched
        print(f"ashd: {conflict}", file=sys.stderr)
        return 1
    quiet_expected_errors()
    try:
        return asyncio.run(Daemon(config).serve())
    except Exception:  # boundary: a start-up failure is reported once, clearly
        logging.getLogger("ashd").exception("ashd failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())

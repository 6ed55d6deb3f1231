"""Write the man pages from the code: ``python scripts/build_man.py [OUT_DIR]`` (``make man``).

- ``ashd.1`` and ``ashctl.1``: the options come from each program's ``build_parser()``
  (argparse-manpage); EXIT STATUS, ENVIRONMENT and FILES are added here, the exit codes and
  the environment names read from the code that uses them.
- ``ashd.toml.5``: every section and key of :class:`ashd.config.Config`, with its type, its
  default, its environment variable (``ENV_KEYS``) and its meaning, which is the comment
  beside (or above) the field in ``ashd/config_sections.py``. A key without such a comment stops the
  build: the page cannot drift from the code, and a new key cannot go undocumented.

``tests/unit/test_manpages.py`` regenerates the pages and fails when ``man/`` is stale.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argparse_manpage.manpage import Manpage

from ashd import __version__, config, config_sections
from ashd.cli import ashctl, context, daemon
from ashd.client import discovery
from ashd.systemd import EXIT_TREE_FAILED

REPO = Path(__file__).resolve().parents[1]
MANUAL = "ashd manual"
SOURCE = f"ashd {__version__}"


@dataclass(frozen=True)
class Key:
    section: str  # "" for the top level
    name: str
    kind: str  # the annotation: int, float, str, Path, Secret
    default: Any
    env: str  # "" when only the file sets it
    meaning: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def config_keys() -> list[Key]:
    """Every key of Config, top-level ones first, then each section in Config's order."""
    comments = _field_comments(inspect.getsource(config_sections))
    env = {key: var for key, var in config.ENV_KEYS}
    keys: list[Key] = []

    def add(section: str, owner: type) -> None:
        for f in dataclasses.fields(owner):
            if section == "" and dataclasses.is_dataclass(f.default_factory):
                continue
            dotted = f"{section}.{f.name}" if section else f.name
            meaning = comments.get((owner.__name__, f.name), "")
            if not meaning:
                raise SystemExit(f"ashd/config_sections.py: {owner.__name__}.{f.name} ({dotted}) has no comment; "
                                 "write its meaning beside the field (it becomes ashd.toml(5))")
            default = getattr(owner(), f.name)  # every field has a default
            keys.append(Key(section, f.name, str(f.type), default, env.get(dotted, ""), meaning))

    add("", config.Config)
    for section, owner in sections().items():
        add(section, owner)
    unknown = set(env) - {k.dotted for k in keys}
    if unknown:
        raise SystemExit(f"ashd/config.py: ENV_KEYS names keys that do not exist: {sorted(unknown)}")
    return keys


def sections() -> dict[str, type]:
    """Section name -> its dataclass, in Config's order."""
    return {f.name: f.default_factory for f in dataclasses.fields(config.Config)  # type: ignore[misc]
            if dataclasses.is_dataclass(f.default_factory)}


def section_docs() -> dict[str, str]:
    """Section name -> the docstring written on its class in ashd/config_sections.py (or "")."""
    tree = ast.parse(inspect.getsource(config_sections))
    classes = {node.name: ast.get_docstring(node) or "" for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    return {name: classes.get(owner.__name__, "") for name, owner in sections().items()}


def _field_comments(source: str) -> dict[tuple[str, str], str]:
    """(class, field) -> the comment lines right above the field, then the one beside it."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above: list[str] = []
            line = item.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            beside = [comments[n] for n in range(item.lineno, (item.end_lineno or item.lineno) + 1) if n in comments]
            found[(node.name, item.target.id)] = " ".join(above + beside)
    return found


def toml_value(value: Any) -> str:
    """The default as it would be written in the TOML file."""
    if isinstance(value, config.Secret):
        value = value.reveal()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


TYPE_WORDS = {"int": "integer", "float": "number", "str": "string", "Path": "path (string)",
              "Secret": "secret (string)"}


# --- roff -------------------------------------------------------------------------------

def esc(text: str) -> str:
    """Plain text -> roff: backslashes and hyphens escaped, no line starting as a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in out.split("\n"))


def tagged(items: list[tuple[str, str]], indent: int | None = None) -> str:
    """A .TP list: each tag in bold, with its paragraph (beside the tag when it fits in ``indent``)."""
    out = []
    for tag, text in items:
        out += [f".TP {indent}" if indent else ".TP", f"\\fB{esc(tag)}\\fR", esc(text)]
    if indent:  # short entries: no blank line between them
        out = [".PD 0", *out, ".PD"]
    return "\n".join(out)


def paragraphs(*texts: str) -> str:
    return "\n.PP\n".join(esc(t) for t in texts)


# --- ashd.toml(5) -----------------------------------------------------------------------

def config_page() -> str:
    keys = config_keys()
    docs = section_docs()
    out = [f'.TH ASHD.TOML 5 "{_date()}" "{esc(SOURCE)}" "{MANUAL}"',
           ".SH NAME", "ashd.toml \\- configuration file of ashd",
           ".SH SYNOPSIS", ".B /etc/ashd/ashd.toml",
           ".br", "or the file given by", ".B ashd \\-\\-config", ".I FILE", "or", ".BR $ASHD_CONFIG .",
           ".SH DESCRIPTION",
           paragraphs(
               "ashd(1) reads its configuration from, lowest to highest precedence: built-in defaults, "
               "this TOML file, environment variables, then its command-line options (--host, --port, "
               "--data-dir, --database-url, --log-level). The result is one configuration, fixed "
               "until ashd restarts.",
               "The file holds top-level keys and tables ([server], [pool], ...). An unknown section or "
               "key, a value of the wrong type or out of its range stops ashd at start with a message "
               "naming the key and where its value came from, and exit status 2. "
               "`ashd --print-config` prints the effective configuration with secrets masked.",
               "Keep secrets (model.api_key, auth.*) in the environment, for example in "
               "/etc/ashd/ashd.env (mode 0600) under systemd, rather than in this file.",
               "Each key below is shown with its default; then its type, its environment variable "
               "and what it does. Keys without an environment variable are set in this file only."),
           ".SH TOP-LEVEL KEYS",
           _key_list([k for k in keys if not k.section])]
    out.append(".SH SECTIONS")
    for section in sections():
        out.append(f".SS [{section}]")
        if docs[section]:
            out.append(esc(docs[section]))
        out.append(_key_list([k for k in keys if k.section == section]))
    out += [".SH ENVIRONMENT",
            esc("Each of these variables, when set and not empty, overrides the key it names."),
            tagged([(k.env, k.dotted) for k in keys if k.env]
                   + [("ASHD_CONFIG", "the configuration file, when --config is not given")],
                   indent=max(len(k.env) for k in keys if k.env) + 2),
            ".SH FILES",
            tagged([("/etc/ashd/ashd.toml", "this file, as installed with the systemd unit"),
                    ("/etc/ashd/ashd.env", "environment file of the systemd unit: the place for secrets"),
                    ("systemd/ashd.toml.example", "an example, in the source tree")]),
            ".SH EXAMPLE",
            ".nf", ".RS 4", esc(_example(keys)), ".RE", ".fi",
            ".SH SEE ALSO", ".BR ashd (1),", ".BR ashctl (1)"]
    return "\n".join(out) + "\n"


def _key_list(keys: list[Key]) -> str:
    items = []
    for k in keys:
        where = f"environment {k.env}" if k.env else "no environment variable"
        items.append((f"{k.name} = {toml_value(k.default)}",
                      f"{TYPE_WORDS.get(k.kind, k.kind)}; {where}.\n{_sentence(k.meaning)}"))
    return tagged(items)


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", ")")) else text + "."


def _example(keys: list[Key]) -> str:
    pick = {"server.port", "pool.max_sandboxes", "sandbox.memory_mb", "sandbox.disk_mb"}
    out = ['data_dir = "/var/lib/ashd"', ""]
    current = ""
    for k in keys:
        if k.dotted in pick:
            if k.section != current:
                out += ([""] if current else []) + [f"[{k.section}]"]
                current = k.section
            out.append(f"{k.name} = {toml_value(k.default)}")
    return "\n".join(out)


# --- ashd(1) and ashctl(1) --------------------------------------------------------------

def program_page(parser: argparse.ArgumentParser, extra: list[tuple[str, str]]) -> str:
    page = Manpage(parser)
    page.source, page.manual = SOURCE, MANUAL
    page.date = _date()
    page.description = (parser.description or "").rstrip(".")
    page.description = page.description[:1].lower() + page.description[1:]
    for heading, content in extra:
        page.add_section(heading, "=", content)
    return str(page)


def ashd_page() -> str:
    keys = config_keys()
    return program_page(daemon.build_parser(), [
        ("comments", paragraphs(
            "Configuration, lowest to highest precedence: built-in defaults, the TOML file given by "
            "--config (or $ASHD_CONFIG), environment variables, then these options. ashd.toml(5) "
            "lists every key, its default and its environment variable.")),
        ("exit status", tagged([
            ("0", "clean shutdown after SIGTERM or SIGINT, or --print-config / --version / --help"),
            ("1", "start-up failure (the daemon's dependencies missing, the database unreachable, ...)"),
            ("2", "invalid configuration or usage; the message names the key and its source"),
            (str(EXIT_TREE_FAILED), "the supervision tree gave up: a long-lived actor (the pool, the session "
                                    "supervisor) kept crashing beyond supervision.tree_intensity or "
                                    "tree_budget_limit; systemd's Restart=on-failure starts ashd again")],
            indent=6)),
        ("environment", paragraphs("Each variable sets one configuration key (see ashd.toml(5)):")
         + "\n" + tagged([(k.env, k.dotted) for k in keys if k.env]
                         + [("ASHD_CONFIG", "the configuration file, when --config is not given")],
                         indent=max(len(k.env) for k in keys if k.env) + 2)),
        ("files", tagged([
            ("/etc/ashd/ashd.toml", "the configuration file of the systemd unit; see ashd.toml(5)"),
            ("/etc/ashd/ashd.env", "its environment file: secrets such as ANTHROPIC_API_KEY (mode 0600)"),
            ("DATA_DIR/ash.db", "the SQLite database, unless store.database_url names another"),
            ("DATA_DIR/initial-api-key", "the bootstrap admin key of tenant default (mode 0600), "
                                         "written on first start unless ASH_API_KEY is set"),
            ("DATA_DIR/agents/", "agent folders deployed by upload"),
            ("DATA_DIR/sandboxes/", "one directory per sandbox: its disk image, workspace, HOME and log"),
            ("DATA_DIR/snapshots/", "workspace snapshots, unless snapshot.url names another store"),
            (f"{config.SandboxConfig.mount_root}/", "host paths the sandboxes reach (sandbox.mount_root)"),
            ("/var/lib/ashd", "DATA_DIR under the systemd unit (./data by default)")])),
        ("see also", ".BR ashctl (1),\n.BR ashd.toml (5)"),
    ])


def ashctl_page() -> str:
    codes = [
        (context.EXIT_OK, "success"),
        (context.EXIT_SERVER_ERROR, "the server answered with an error (4xx or 5xx), or the turn failed "
                                    "(an error event, or a result marked is_error); session exec exits "
                                    "with the remote command's own status instead"),
        (context.EXIT_USAGE, "usage error: bad arguments, an agent folder that cannot be uploaded, "
                             "or ashctl mcp without the MCP package (pip install 'ashd[mcp]')"),
        (context.EXIT_UNREACHABLE, "cannot connect to the server (or it dropped the stream), "
                                   "or no API key was found"),
        (context.EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
        (context.EXIT_BROKEN_PIPE, "the reader of standard output went away (for example | head)"),
    ]
    data_dirs = f"$ASH_DATA_DIR, then ./data, then {discovery.SYSTEM_DATA_DIR}"
    return program_page(ashctl.build_parser(), [
        ("comments", esc("Global options may also follow the command: ashctl session list --json.")),
        ("exit status", tagged([(str(code), text) for code, text in codes], indent=6)),
        ("environment", tagged([
            ("ASH_SERVER_URL", f"server URL when --server is not given (default {discovery.DEFAULT_SERVER_URL})"),
            ("ASH_API_KEY", "API key when --api-key is not given (sent as a Bearer token)"),
            ("ASH_DATA_DIR", f"where to look first for the {discovery.KEY_FILE_NAME} file of a server on "
                             "this machine"),
            ("NO_COLOR", "when set, no colour in the output")])),
        ("files", tagged([
            (f"DATA_DIR/{discovery.KEY_FILE_NAME}",
             f"the API key when neither --api-key nor ASH_API_KEY gives one; DATA_DIR is {data_dirs}, "
             "the first readable file wins (only for a server on this machine)")])),
        ("see also", ".BR ashd (1),\n.BR ashd.toml (5)"),
    ])


def _date() -> str:
    # Only the .TH line carries it; tests compare everything after that line.
    from argparse_manpage.compat import get_reproducible_date
    return str(get_reproducible_date())


PAGES = {"ashd.1": ashd_page, "ashctl.1": ashctl_page, "ashd.toml.5": config_page}


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "man"
    out.mkdir(parents=True, exist_ok=True)
    for name, build in PAGES.items():
        (out / name).write_text(build())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

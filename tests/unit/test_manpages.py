"""The man pages: generated from the code, complete, renderable, and found by man(1) after set-up.

man/*.1 and man/ashd.toml.5 are written by scripts/build_man.py (`make man`) from the parsers
and ashd/config.py (the keys' meanings: ashd/config_sections.py); `make setup` installs them
under the venv's share/man, which the README tells users to read with
`MANPATH=.venv/share/man man ashctl` (or plain `man ashctl` with .venv/bin on PATH). These
tests run the real man(1) and groff (scripts/ensure-system-deps installs them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ashd import config

REPO = Path(__file__).resolve().parents[2]
PAGES = {"ashd.1": "ashd", "ashctl.1": "ashctl", "ashd.toml.5": "ashd.toml"}
SECTIONS_1 = ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO")
SECTIONS_5 = ("NAME", "SYNOPSIS", "DESCRIPTION", "TOP-LEVEL KEYS", "SECTIONS", "ENVIRONMENT", "FILES", "SEE ALSO")
VENV_MAN = Path(sys.prefix) / "share" / "man"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make setup` (scripts/ensure-system-deps installs it)"
    return path


def render(page: Path) -> str:
    """The page as man(1) prints it to a pipe: plain text, wide enough that no tag or key wraps."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MANWIDTH": "250", "LC_ALL": "C.UTF-8",
           "MANPAGER": "cat", "PAGER": "cat"}
    done = subprocess.run([_tool("man"), "-l", str(page)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, f"man -l {page.name}: {done.stderr}"
    return done.stdout


def body(text: str) -> list[str]:
    """A page without its .TH line (which carries the build date and version)."""
    assert text.startswith(".TH ")
    return text.splitlines()[1:]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_man.py"), str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("page", list(PAGES))
def test_committed_page_is_what_the_code_generates(page: str, built: Path) -> None:
    committed = REPO / "man" / page
    assert committed.exists(), f"man/{page} is missing: run `make man`"
    assert body(committed.read_text()) == body((built / page).read_text()), f"man/{page} is stale: run `make man`"


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_without_warnings_and_has_the_required_sections(page: str) -> None:
    path = REPO / "man" / page
    checked = subprocess.run([_tool("groff"), "-man", "-ww", "-z", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr, f"groff warns about man/{page}: {checked.stderr}"
    headings = [line for line in render(path).splitlines() if re.fullmatch(r"[A-Z][A-Z -]+", line)]
    required = SECTIONS_5 if page.endswith(".5") else SECTIONS_1
    assert [h for h in headings if h in required] == list(required), f"man/{page} has sections {headings}"


def _config_keys() -> list[tuple[str, str, Any]]:
    """(section, key, default) for every key of Config; section "" for the top level."""
    keys: list[tuple[str, str, Any]] = []
    defaults = config.Config()
    for f in dataclasses.fields(defaults):
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default):
            keys += [(f.name, sub.name, getattr(default, sub.name)) for sub in dataclasses.fields(default)]
        else:
            keys.append(("", f.name, default))
    return keys


def _toml(value: Any) -> str:
    if isinstance(value, config.Secret):
        value = value.reveal()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def _blocks(text: str) -> dict[str, str]:
    """Rendered ashd.toml(5) -> {"": top-level keys, "<section>": that section's keys}."""
    top = re.search(r"^TOP-LEVEL KEYS\n(.*?)^SECTIONS\n(.*?)^ENVIRONMENT\n", text, re.S | re.M)
    assert top, "ashd.toml(5) has no TOP-LEVEL KEYS / SECTIONS / ENVIRONMENT"
    parts = re.split(r"^   \[(\w+)\]\n", top.group(2), flags=re.M)
    return {"": top.group(1), **dict(zip(parts[1::2], parts[2::2], strict=True))}


def test_config_page_documents_every_key_with_its_default_environment_and_meaning() -> None:
    text = render(REPO / "man" / "ashd.toml.5")
    blocks = _blocks(text)
    env = dict((key, var) for key, var in config.ENV_KEYS)
    keys = _config_keys()
    assert len(keys) > 40  # the walk above found the sections
    sections = {section for section, _, _ in keys if section}
    assert set(blocks) == sections | {""}, "ashd.toml(5) sections differ from Config's"
    for section, name, default in keys:
        dotted = f"{section}.{name}" if section else name
        entry = re.search(rf"^ {{7}}{re.escape(name)} = (.*)\n {{14}}(\S.*)$", blocks[section], re.M)
        assert entry, f"{dotted} is not in ashd.toml(5) under [{section or 'top level'}]"
        assert entry.group(1) == _toml(default), f"{dotted}: page says {entry.group(1)}, code {_toml(default)}"
        where = f"environment {env[dotted]}." if dotted in env else "no environment variable."
        line = re.sub(" +", " ", entry.group(2))  # a justified line has runs of spaces
        assert where in line, f"{dotted}: expected '{where}' in: {line}"
        meaning = line.split(where, 1)[1].strip()
        assert len(meaning) > 3, f"{dotted} has no meaning in ashd.toml(5)"
    environment = text.split("\nENVIRONMENT\n", 1)[1].split("\nFILES\n", 1)[0]
    for dotted, var in config.ENV_KEYS:
        assert re.search(rf"^ {{7}}{var} +{re.escape(dotted)}$", environment, re.M), f"{var} not in ENVIRONMENT"


def test_generator_refuses_a_key_without_a_meaning(tmp_path: Path) -> None:
    # A copy of the generator run against a config_sections.py whose first commented key lost its comment.
    source = (REPO / "ashd" / "config_sections.py").read_text()
    stripped = re.sub(r'(    port: int = 4100)  #.*', r"\1", source, count=1)
    assert stripped != source
    package = tmp_path / "ashd"
    shutil.copytree(REPO / "ashd", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "config_sections.py").write_text(stripped)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build_man.py"), str(tmp_path / "out")],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "ServerConfig.port (server.port) has no comment" in done.stderr


@pytest.mark.parametrize("page", list(PAGES))
def test_man_finds_the_installed_page_after_setup(page: str) -> None:
    name, section = PAGES[page], page.rsplit(".", 1)[1]
    installed = VENV_MAN / f"man{section}" / page
    assert installed.exists(), f"{installed} is missing: `make setup` installs the man pages"
    assert installed.read_text() == (REPO / "man" / page).read_text(), f"{installed} is stale: run `make setup`"
    man = _tool("man")
    base = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(Path.home())}
    # As the README says: MANPATH=.venv/share/man, relative to the checkout ...
    checkout = Path(sys.prefix).parent
    relative = subprocess.run([man, "-w", section, name], cwd=checkout, capture_output=True, text=True,
                              env={**base, "MANPATH": str(VENV_MAN.relative_to(checkout))}, timeout=60)
    assert Path(checkout, relative.stdout.strip()).resolve() == installed.resolve(), relative.stderr
    shown = subprocess.run([man, section, name], cwd=checkout, capture_output=True, text=True, timeout=60,
                           env={**base, "MANPATH": str(VENV_MAN.relative_to(checkout)), "MANPAGER": "cat",
                                "MANWIDTH": "250"})
    assert shown.returncode == 0 and not shown.stderr, shown.stderr
    assert shown.stdout == render(REPO / "man" / page)
    # ... or no MANPATH at all, with the venv's bin/ on PATH (man-db derives <bin>/../share/man).
    on_path = subprocess.run([man, "-w", section, name], capture_output=True, text=True, timeout=60,
                             env={**base, "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin"})
    assert Path(on_path.stdout.strip()).resolve() == installed.resolve(), on_path.stderr

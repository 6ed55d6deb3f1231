"""``ashctl mcp`` without the MCP package: a clear message, the usage exit code; and the
package is imported by that command alone."""

from __future__ import annotations

import json
import subprocess
import sys

from ashd.cli.context import EXIT_USAGE

# A None entry in sys.modules makes `import mcp` fail as if the package were not installed.
WITHOUT_MCP = """
import sys
sys.modules["mcp"] = None
from ashd.cli.ashctl import main
sys.exit(main(sys.argv[1:]))
"""

LOADED_BY_OTHERS = """
import json, sys
from ashd.cli.ashctl import run
run(["--server", "http://127.0.0.1:9", "agent", "list"], sys.stderr, sys.stderr, {})
run(["mcp", "--help"], sys.stderr, sys.stderr, {})
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("mcp", "ashd"))))
"""


def test_without_the_package_it_says_what_to_install() -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_MCP, "mcp"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == EXIT_USAGE
    assert "ashctl mcp needs the MCP Python SDK" in result.stderr
    assert "pip install 'ashd[mcp]'" in result.stderr
    assert result.stdout == ""


def test_other_commands_do_not_import_the_package() -> None:
    result = subprocess.run([sys.executable, "-c", LOADED_BY_OTHERS], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, check=True)
    loaded = json.loads(result.stdout)
    assert "ashd.cli.mcp_command" in loaded  # the command is there...
    assert not [name for name in loaded if name == "mcp" or name.startswith(("mcp.", "ashd.mcp"))]

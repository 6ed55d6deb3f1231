"""The client and ashctl import nothing outside the standard library."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import ashd.client, ashd.cli.ashctl
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_client_and_ashctl_need_only_the_standard_library() -> None:
    # A fresh interpreter: this test process has pytest, httpx & co. loaded already.
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, timeout=60)
    loaded = set(json.loads(result.stdout)) - set(sys.stdlib_module_names)
    # What remains besides ashd is interpreter/installer plumbing (.pth hooks).
    third_party = {name for name in loaded if name != "ashd" and not name.startswith("_")}
    assert third_party == set()

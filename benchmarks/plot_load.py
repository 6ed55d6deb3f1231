"""Plot ``load.py``'s timelines: each call's latency against when it was sent, both tenants.

One panel per run (N): the burst tenant's creates and messages, the other tenant's creates
and first replies, a line at 5 s (the other tenant's goal) and the 1-minute load average
range in the title (the machine is shared: figures under load are not quiet-machine figures).
matplotlib is needed only here (``.venv/bin/pip install matplotlib``; not a runtime dependency).

    .venv/bin/python benchmarks/plot_load.py benchmarks/results/load.json --out benchmarks/results/load.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERIES = [  # (tenant, kind, label, marker, colour)
    ("burst", "create", "burst tenant: create", ".", "tab:blue"),
    ("burst", "message", "burst tenant: message", ".", "tab:cyan"),
    ("other", "create", "other tenant: create", "^", "tab:red"),
    ("other", "message", "other tenant: first reply", "v", "tab:orange"),
]


def panel(ax: Any, run: dict[str, Any]) -> None:
    rows = run["timeline"]
    for tenant, kind, label, marker, colour in SERIES:
        mine = [r for r in rows if r["tenant"] == tenant and r["kind"] == kind]
        ok = [r for r in mine if r["ok"]]
        failed = [r for r in mine if not r["ok"]]
        ax.scatter([r["at_s"] for r in ok], [r["s"] for r in ok], s=14 if tenant == "other" else 6,
                   marker=marker, color=colour, label=f"{label} ({len(ok)} ok)")
        if failed:
            ax.scatter([r["at_s"] for r in failed], [r["s"] for r in failed], s=30, marker="x", color=colour,
                       label=f"{label}: failed ({len(failed)})")
    ax.axhline(5.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("sent at, s from the burst's start")
    ax.set_ylabel("latency, s (log)")
    load = run.get("loadavg_1m", {})
    ax.set_title(f"N={run['n']} x {run['m']}: {run.get('label', '')} load avg {load.get('min')}-{load.get('max')}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="load.py results JSON (their runs are drawn in order)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = [run for path in args.results for run in json.loads(path.read_text())["runs"]]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 4 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        panel(ax, run)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

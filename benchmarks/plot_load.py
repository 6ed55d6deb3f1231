"""Plot ``load.py``'s results: each call's latency against when it was sent, both tenants (one
panel per run); with ``--by-n``, also throughput and message latency against N.

One panel per run (N): the burst tenant's creates and messages, the other tenant's creates
and first replies, a line at 5 s (the other tenant's goal) and the 1-minute load average
range in the title (the machine is shared: figures under load are not quiet-machine figures).
matplotlib is needed only here (``.venv/bin/pip install matplotlib``; not a runtime dependency).

    .venv/bin/python benchmarks/plot_load.py benchmarks/results/load.json --out benchmarks/results/load.png
    .venv/bin/python benchmarks/plot_load.py benchmarks/results/load_quiet.json --out ... --by-n docs/load.png
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


def by_n(runs: list[dict[str, Any]], out: Path) -> None:
    """Messages per second, and message latency p50 / p99, against N (one point per run)."""
    runs = sorted(runs, key=lambda r: r["n"])
    ns = [r["n"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(ns, [r["msgs_per_s"] for r in runs], marker="o")
    left.set_xlabel("N sessions created at once (then M messages each, all at once)")
    left.set_ylabel("messages per second")
    left.set_ylim(bottom=0)
    for key, label in (("p50_s", "p50"), ("p99_s", "p99")):
        right.plot(ns, [r[key] for r in runs], marker="o", label=f"message latency {label}")
    right.set_yscale("log")
    right.set_xlabel("N")
    right.set_ylabel("seconds (log)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
    loads = [v for r in runs for v in (r.get("loadavg_1m", {}).get("min"), r.get("loadavg_1m", {}).get("max"))
             if v is not None]
    m = runs[0]["m"] if runs else 0
    fig.suptitle(f"load.py, N x {m}: throughput and latency against N (load avg {min(loads, default=0)}-"
                 f"{max(loads, default=0)})", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="load.py results JSON (their runs are drawn in order)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--by-n", type=Path, help="also plot throughput and p50/p99 against N here")
    args = parser.parse_args()
    runs = [run for path in args.results for run in json.loads(path.read_text())["runs"]]
    if args.by_n is not None:
        by_n(runs, args.by_n)
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

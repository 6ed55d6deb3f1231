"""What a turn's commit costs on SQLite with time-ordered row ids and with random ones.

Every stored row gets an id (:func:`ashd.store.dialect.new_id`), and each table's primary key is
an index on it. This measures the commit a turn makes while it streams: ``--rows`` SSE frames of
one session appended by :meth:`Store.append_log_at_once` (the event loop's write; the message
benchmark's turns commit about four rows at a time), ``--commits`` times, round robin over
``--sessions`` sessions, into a database that already holds ``--prefill`` frames. Reported per
commit: the process's CPU time (user + system), the wall time, and the bytes the commit added to
the write-ahead log (SQLite writes each page a commit changed there whole: the pages it had to
change). Both id kinds run in alternating rounds, each on a fresh database in ``--dir``.

    .venv/bin/python benchmarks/store_commit.py --out benchmarks/results/store_commit.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.store import Store, raw_writes  # noqa: E402
from ashd.store.dialect import new_id  # noqa: E402
from benchmarks.message_latency import emit, machine  # noqa: E402

KINDS: dict[str, Callable[[], str]] = {"time_ordered": new_id, "random": lambda: str(uuid.uuid4())}
FRAME = json.dumps({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": " brown fox"}}})


def one_round(kind: str, args: argparse.Namespace, parent: str) -> dict[str, float]:
    raw_writes.new_id = KINDS[kind]  # type: ignore[attr-defined]  # what append_log numbers rows with
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        db = os.path.join(folder, "ashd.db")
        store = Store(f"sqlite:///{db}")
        store.migrate()
        store.upsert_agent("bench", "agent", folder, {})
        sessions = [f"session-{i:04d}" for i in range(args.sessions)]
        for sid in sessions:
            store.create_session("bench", sid, "agent", "active")
        seqs = dict.fromkeys(sessions, 0)

        def frames(sid: str, n: int) -> list[tuple[int, str, str]]:
            first = seqs[sid]
            seqs[sid] += n
            return [(first + i + 1, "message", FRAME) for i in range(n)]

        per_batch = 500
        for i in range(args.prefill // per_batch):
            sid = sessions[i % len(sessions)]
            store.append_log("bench", sid, [], [], frames(sid, per_batch))
        store.checkpoint()
        wal = Path(db + "-wal")
        size = wal.stat().st_size if wal.exists() else 0
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(args.commits):
            sid = sessions[i % len(sessions)]
            if not store.append_log_at_once("bench", sid, [], [], frames(sid, args.rows)):
                raise RuntimeError("a write at once was refused (nothing else writes here)")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        grown = (wal.stat().st_size if wal.exists() else 0) - size
        store.close()
    return {"cpu_us_per_commit": round(cpu / args.commits * 1e6, 1),
            "wall_us_per_commit": round(wall / args.commits * 1e6, 1),
            "wal_kb_per_commit": round(grown / args.commits / 1024, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4, help="frames per commit")
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--prefill", type=int, default=100_000, help="frames stored before the measured commits")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each id kind, alternating")
    parser.add_argument("--dir", default=None, help="where the databases go (default: the temp directory)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    parent = args.dir or tempfile.gettempdir()
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            runs[kind].append(one_round(kind, args, parent))
            print(kind, runs[kind][-1], flush=True)
    medians = {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for kind, rs in runs.items()}
    report: dict[str, Any] = {
        "rows_per_commit": args.rows, "commits": args.commits, "sessions": args.sessions, "prefill": args.prefill,
        "medians": medians, "runs": runs, "machine": machine()}
    emit(report, args.out)


if __name__ == "__main__":
    main()

"""``ashctl eval``: an agent's eval cases and runs.

``ashctl eval run AGENT`` starts a run and follows it to the end: a progress bar on stderr
when stderr is a terminal, one plain line per change otherwise, and with ``--json`` only the
final run and its results on stdout. It exits 1 unless every case passed (for CI).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ashd.cli.context import EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, Context, Leaf, emit, read_input
from ashd.client.formatting import format_pairs, format_table

SCORERS = ("exact", "contains", "regex", "json-schema", "rubric")
FINAL = ("completed", "failed", "interrupted")
BAR_WIDTH = 30


def register(commands: Any, leaf: Leaf) -> None:
    group = commands.add_parser("eval", help="evaluate an agent on stored cases",
                                description="evaluate an agent on stored cases").add_subparsers(
        dest="eval_command", metavar="ACTION", required=True)
    leaf(group, "cases", _cases, "list an agent's eval cases").add_argument("agent", metavar="AGENT")
    sub = leaf(group, "add", _add, "add an eval case")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("prompt", metavar="PROMPT", help="the prompt the agent gets")
    sub.add_argument("--expect", required=True, metavar="TEXT",
                     help="the scorer's argument (json-schema: the schema as JSON)")
    sub.add_argument("--scorer", choices=SCORERS, default="contains", help="how to score (default: contains)")
    sub.add_argument("--name", help="a short name (default: the prompt's start)")
    sub.add_argument("--category", help="a category to select runs by")
    sub.add_argument("--tag", action="append", dest="tags", default=[], help="a tag (repeatable)")
    sub = leaf(group, "import", _import, "add cases from a JSON file ({cases: [...]} as export prints)")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("file", metavar="FILE", help='the JSON file ("-" reads stdin)')
    leaf(group, "export", _export, "print an agent's cases as JSON for import").add_argument("agent", metavar="AGENT")
    sub = leaf(group, "delete", _delete, "delete an eval case")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("case_id", metavar="CASE_ID")
    sub = leaf(group, "run", _run, "run the agent's cases and follow the run (exit 1 unless all pass)")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("--version", type=int, dest="version_number", metavar="N",
                     help="test this agent version's prompt (default: the active one)")
    sub.add_argument("--category", action="append", dest="categories", default=[], help="only this category")
    sub.add_argument("--tag", action="append", dest="tags", default=[], help="only cases with this tag")
    sub.add_argument("--no-wait", action="store_true", help="print the run id and return at once")
    sub.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between polls")
    leaf(group, "runs", _runs, "list an agent's eval runs, newest first").add_argument("agent", metavar="AGENT")
    sub = leaf(group, "results", _results, "show a run's results")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("run_id", metavar="RUN_ID")
    sub = leaf(group, "compare", _compare, "compare two runs case by case, regressions first")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("run_a", metavar="RUN_A", help="the baseline run")
    sub.add_argument("run_b", metavar="RUN_B", help="the candidate run")
    sub = leaf(group, "score", _score, "give a human score (1-5) to a run's results")
    sub.add_argument("agent", metavar="AGENT")
    sub.add_argument("run_id", metavar="RUN_ID")
    sub.add_argument("human_score", metavar="SCORE", type=int, choices=range(1, 6))
    sub.add_argument("--result", metavar="RESULT_ID", help="only this result (default: all of the run)")
    sub.add_argument("--notes", help="a note kept with the score")


def _case_rows(cases: list[dict[str, Any]]) -> str:
    rows = [(c.get("id"), c.get("name"), c.get("scorer"), c.get("category") or "-", " ".join(c.get("tags") or []))
            for c in cases]
    return format_table(("ID", "NAME", "SCORER", "CATEGORY", "TAGS"), rows)


def _cases(args: argparse.Namespace, ctx: Context) -> int:
    cases = ctx.client.list_eval_cases(args.agent)
    return emit(ctx, {"cases": cases}, _case_rows(cases))


def _add(args: argparse.Namespace, ctx: Context) -> int:
    expected: Any = args.expect
    if args.scorer == "json-schema":
        try:
            expected = json.loads(args.expect)
        except ValueError as exc:
            ctx.err.write(f"ashctl: error: --expect is not JSON: {exc}\n")
            return EXIT_USAGE
    fields = {k: v for k, v in (("scorer", args.scorer), ("name", args.name), ("category", args.category),
                                ("tags", args.tags or None)) if v is not None}
    case = ctx.client.create_eval_case(args.agent, args.prompt, expected, **fields)
    return emit(ctx, {"case": case}, str(case.get("id")))


def _import(args: argparse.Namespace, ctx: Context) -> int:
    try:
        doc = json.loads(read_input(args.file))
    except ValueError as exc:
        ctx.err.write(f"ashctl: error: {args.file} is not JSON: {exc}\n")
        return EXIT_USAGE
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        ctx.err.write(f"ashctl: error: {args.file} holds no list of cases ({{\"cases\": [...]}} or [...])\n")
        return EXIT_USAGE
    answer = ctx.client.import_eval_cases(args.agent, cases)
    return emit(ctx, answer, f"imported {answer.get('imported')} case(s)")


def _export(args: argparse.Namespace, ctx: Context) -> int:
    doc = ctx.client.export_eval_cases(args.agent)
    ctx.out.write(json.dumps(doc, indent=2) + "\n")
    return EXIT_OK


def _delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_eval_case(args.agent, args.case_id)
    return emit(ctx, {"deleted": True, "id": args.case_id}, f"deleted eval case {args.case_id}")


def progress_line(run: dict[str, Any]) -> str:
    """``3/5 done: 2 passed, 1 failed, 0 errors`` (pure)."""
    return (f"{run.get('completedCases', 0)}/{run.get('totalCases', 0)} done: {run.get('passed', 0)} passed, "
            f"{run.get('failed', 0)} failed, {run.get('errors', 0)} errors")


def progress_bar(run: dict[str, Any]) -> str:
    total = run.get("totalCases") or 1
    filled = BAR_WIDTH * int(run.get("completedCases", 0)) // int(total)
    return f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress_line(run)}"


def _run(args: argparse.Namespace, ctx: Context) -> int:
    run = ctx.client.start_eval_run(args.agent, args.version_number, args.categories, args.tags)
    if args.no_wait:
        return emit(ctx, {"run": run}, str(run.get("id")))
    tty = ctx.err.isatty() if hasattr(ctx.err, "isatty") else False
    if not ctx.json:
        version = run.get("versionNumber")
        ctx.err.write(f"eval run {run.get('id')} of {args.agent} "
                      f"({'version ' + str(version) if version else 'CLAUDE.md'}): {run.get('totalCases')} case(s)\n")
    shown = ""
    while True:
        line = progress_line(run)
        if not ctx.json and line != shown:
            ctx.err.write(progress_bar(run) if tty else line + "\n")
            ctx.err.flush()
            shown = line
        if run.get("status") in FINAL:
            break
        time.sleep(args.interval)
        run = ctx.client.get_eval_run(args.agent, str(run.get("id")))
    if tty and not ctx.json:
        ctx.err.write("\n")
    results = ctx.client.get_eval_run_results(args.agent, str(run.get("id")))
    emit(ctx, {"run": run, "results": results}, _result_rows(results) + f"\nrun {run.get('status')}: "
         f"{progress_line(run)}" + (f" ({run.get('error')})" if run.get("error") else ""))
    all_passed = run.get("status") == "completed" and run.get("passed") == run.get("totalCases")
    return EXIT_OK if all_passed else EXIT_SERVER_ERROR


def _result_rows(results: list[dict[str, Any]]) -> str:
    rows = [(r.get("caseName"), r.get("status"), r.get("score"), (r.get("reason") or "")[:60],
             r.get("humanScore") or "-") for r in results]
    return format_table(("CASE", "STATUS", "SCORE", "REASON", "HUMAN"), rows)


def _runs(args: argparse.Namespace, ctx: Context) -> int:
    runs = ctx.client.list_eval_runs(args.agent)
    rows = [(r.get("id"), r.get("status"), r.get("versionNumber") or "-", progress_line(r), r.get("createdAt"))
            for r in runs]
    return emit(ctx, {"runs": runs}, format_table(("ID", "STATUS", "VERSION", "PROGRESS", "CREATED"), rows))


def _results(args: argparse.Namespace, ctx: Context) -> int:
    run = ctx.client.get_eval_run(args.agent, args.run_id)
    results = ctx.client.get_eval_run_results(args.agent, args.run_id)
    return emit(ctx, {"run": run, "results": results}, _result_rows(results) + "\n" + progress_line(run))


def _compare(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.compare_eval_runs(args.agent, args.run_a, args.run_b)

    def status(side: dict[str, Any] | None) -> str:
        return "-" if side is None else str(side.get("status"))

    rows = [(c.get("change"), c.get("caseName"), status(c.get("a")), status(c.get("b"))) for c in answer["cases"]]
    human = format_table(("CHANGE", "CASE", "A", "B"), rows) + "\n" + format_pairs(answer.get("summary") or {})
    return emit(ctx, answer, human)


def _score(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.score_eval_run(args.agent, args.run_id, args.human_score, args.notes, args.result)
    count = 1 if "result" in answer else len(answer.get("results") or [])
    return emit(ctx, answer, f"scored {count} result(s) {args.human_score}/5")

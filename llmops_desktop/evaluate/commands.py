"""``llmops suite import|list|show`` and ``llmops eval ARTIFACT… | eval compare A B``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _cli():
    from llmops_desktop.cli import common as cli

    return cli


def cmd_suite(args: argparse.Namespace) -> int:
    return int(_SUITE_ACTIONS[args.suite_action](args) or 0)


def _suite_import(args: argparse.Namespace) -> int:
    from llmops_desktop.evaluate.errors import SuiteBadRowsError
    from llmops_desktop.evaluate.suites import import_suite

    cli = _cli()
    catalog = cli.open_catalog(args)
    read = lambda p: open(p, encoding="utf-8").read() if p else None  # noqa: E731
    try:
        suite = import_suite(catalog, args.path, name=args.name, fmt=args.format,
                             layout=args.layout, thresholds=args.threshold or (),
                             judge_prompt=read(args.judge_prompt),
                             pairwise_prompt=read(args.pairwise_prompt),
                             keep_good_rows=args.keep_good_rows)
    except SuiteBadRowsError as exc:
        if args.json:
            cli.print_json({"error": "SuiteBadRowsError", "message": str(exc),
                            "bad_rows": exc.bad_rows})
            print(f"llmops: error: {exc}", file=sys.stderr)
            return exc.exit_code
        raise
    if args.json:
        cli.print_json(suite.to_json())
        return 0
    kinds = ", ".join(f"{n} {k}" for k, n in suite.kinds.items())
    print(f"imported {suite.ref}: {suite.items} items ({kinds}), layout {suite.layout}, "
          f"sha256 {suite.sha256[:16]}…")
    for t in suite.thresholds:
        print("  passes when " + _threshold_text(t))
    for b in suite.metadata.get("bad_rows", [])[:20]:
        print(f"  left out line {b['line']}: {b['reason']}")
    return 0


def _threshold_text(t: dict[str, Any]) -> str:
    if "min" in t:
        return f"{t['metric']} >= {t['min']}"
    return f"{t['metric']} >= parent's - {t['max_drop']}"


def _suite_list(args: argparse.Namespace) -> int:
    from llmops_desktop.evaluate.suites import list_suites

    cli = _cli()
    suites = list_suites(cli.open_catalog(args))
    if args.json:
        cli.print_json([s.to_json() for s in suites])
        return 0
    if not suites:
        print("No suites yet. 'llmops suite import FILE --name NAME' adds one.")
        return 0
    print(f"{'suite':<32} {'items':>7} {'layout':<14} sha256")
    for s in suites:
        print(f"{s.ref:<32} {s.items:>7} {s.layout:<14} {s.sha256[:12]}")
    return 0


def _suite_show(args: argparse.Namespace) -> int:
    import json

    from llmops_desktop.evaluate.suites import iter_items, resolve_suite

    cli = _cli()
    suite = resolve_suite(cli.open_catalog(args), args.suite)
    items = [it for _, it in zip(range(args.rows), iter_items(suite))]
    if args.json:
        cli.print_json(suite.to_json() | {"preview": items})
        return 0
    print(f"{suite.ref}  ({suite.items} items {suite.kinds}, layout {suite.layout})")
    print(f"  sha256 {suite.sha256}\n  source {suite.source}")
    for t in suite.thresholds:
        print("  passes when " + _threshold_text(t))
    for i, it in enumerate(items):
        text = json.dumps(it, ensure_ascii=False)
        print(f"  [{i}] {text[:200]}{'…' if len(text) > 200 else ''}")
    return 0


_SUITE_ACTIONS: dict[str, Any] = {"import": _suite_import, "list": _suite_list,
                                  "show": _suite_show}


def cmd_eval(args: argparse.Namespace) -> int:
    if args.artifacts and args.artifacts[0] == "compare":
        return _compare(args, args.artifacts[1:])
    from llmops_desktop.evaluate.judge import JUDGE_KEY_ENV, judge_secrets
    from llmops_desktop.evaluate.task import EvalRequest
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.serving.commands import api_key_from_args

    cli = _cli()
    catalog = cli.open_catalog(args)
    judge_key = api_key_from_args(args, "judge_api_key", JUDGE_KEY_ENV) or ""
    request = EvalRequest(artifacts=tuple(args.artifacts),
                          **values_from_args(args, EvalRequest)).check(catalog)
    result = cli.run_job_in_terminal(catalog, request, quiet=args.json,
                                     secrets=judge_secrets(judge_key))
    if args.json:
        cli.print_json(result)
        return 0
    for run in result["runs"]:
        print(f"{run['artifact']} on {result['suite']} (run #{run['run_id']}, "
              f"{run['summary']['items']} items)")
        for name, s in run["summary"]["metrics"].items():
            print(f"  {name:<16} {s['mean']:.4f}  95% CI [{s['ci_low']:.4f}, {s['ci_high']:.4f}]")
        for name, value in run["summary"].get("extra", {}).items():
            print(f"  {name:<16} {value:.4f}")
    return 0


def _compare(args: argparse.Namespace, refs: list[str]) -> int:
    from llmops_desktop.evaluate.compare import compare_runs
    from llmops_desktop.evaluate.report import comparison_csv, comparison_html, print_comparison
    from llmops_desktop.errors import InvalidInputError

    cli = _cli()
    if len(refs) < 2 or not args.suite:
        raise InvalidInputError("Compare needs two artifacts and a suite: 'llmops eval compare "
                                "A B --suite NAME'.")
    comparison = compare_runs(cli.open_catalog(args), refs, args.suite)
    if args.csv:
        with open(args.csv, "w", encoding="utf-8", newline="") as fh:
            fh.write(comparison_csv(comparison))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as fh:
            fh.write(comparison_html(comparison))
    if args.json:
        cli.print_json(comparison)
    else:
        print_comparison(comparison)
    return 0


def register(add) -> None:
    from llmops_desktop.evaluate.layouts import LAYOUTS
    from llmops_desktop.evaluate.task import EvalRequest
    from llmops_desktop.fields import add_arguments

    sp = add("suite", cmd_suite, "evaluation suites: import, list, show")
    sub = sp.add_subparsers(dest="suite_action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="machine-readable output on stdout")
        return p

    p = action("import", "import a JSONL, JSON, CSV or Parquet file as a new suite version")
    p.add_argument("path")
    p.add_argument("--name", required=True, help="suite name")
    p.add_argument("--format", choices=("jsonl", "json", "csv", "parquet"),
                   help="file format (default: from the extension)")
    p.add_argument("--layout", choices=LAYOUTS,
                   help="row layout (default: recognised from the columns: MMLU, ARC, "
                        "HellaSwag, TruthfulQA MC, GSM8K, or mc/gen/judged rows)")
    p.add_argument("--threshold", action="append", metavar="RULE",
                   help="pass threshold for approval: METRIC>=VALUE or METRIC>=parent-DROP "
                        "(repeatable)")
    p.add_argument("--judge-prompt", metavar="FILE",
                   help="the pointwise judge prompt ({prompt}, {answer}, {rubric})")
    p.add_argument("--pairwise-prompt", metavar="FILE",
                   help="the pairwise judge prompt ({prompt}, {answer_a}, {answer_b}, {rubric})")
    p.add_argument("--keep-good-rows", action="store_true",
                   help="import the rows that fit and record the bad ones (default: refuse)")
    action("list", "list suites and their versions")
    p = action("show", "a suite version's details and its first items")
    p.add_argument("suite", help="NAME (latest version), NAME@VERSION or id")
    p.add_argument("--rows", type=int, default=5)

    p = add("eval", cmd_eval, "evaluate artifacts on a suite, or 'eval compare A B --suite "
                              "NAME' to compare their runs")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help="artifacts to evaluate (or: compare A B)")
    add_arguments(p, EvalRequest)
    p.add_argument("--judge-api-key-file", metavar="FILE",
                   help="read the judge's API key (a gateway key) from FILE ('-': from stdin); "
                        "or set LLMOPS_JUDGE_API_KEY")
    p.add_argument("--judge-api-key", help=argparse.SUPPRESS)  # refused: never on a command line
    p.add_argument("--csv", metavar="FILE", help="compare: write the matrix as CSV")
    p.add_argument("--html", metavar="FILE", help="compare: write a self-contained HTML report")

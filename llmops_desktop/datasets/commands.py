"""``llmops dataset import|list|show|stats|split|rm``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _cli():
    from llmops_desktop.cli import common as cli

    return cli


def cmd_dataset(args: argparse.Namespace) -> int:
    return int(_ACTIONS[args.dataset_action](args) or 0)


def _import(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.store import BadRowsError, import_dataset

    cli = _cli()
    catalog = cli.open_catalog(args)
    try:
        version = import_dataset(
            catalog, args.path, name=args.name, fmt=args.format, shape=args.shape,
            mapping=args.map or None, keep_good_rows=args.keep_good_rows,
            validation=args.validation, seed=args.seed)
    except BadRowsError as exc:
        if args.json:
            cli.print_json({"error": "BadRowsError", "message": str(exc),
                             "bad_rows": [b.to_json() for b in exc.bad_rows]})
            print(f"llmops: error: {exc}", file=sys.stderr)
            return exc.exit_code
        raise
    if args.json:
        cli.print_json(version.to_json())
        return 0
    bad = version.metadata.get("bad_rows", [])
    print(f"imported {version.ref}: {version.rows} rows, shape {version.shape}, "
          f"sha256 {version.sha256[:16]}…")
    print(f"  columns: {', '.join(f'{k}←{v}' for k, v in version.mapping.items())}")
    print(f"  split: {version.split.get('train_rows')} train / "
          f"{version.split.get('validation_rows')} validation (seed {version.split.get('seed')})")
    if bad:
        print(f"  {len(bad)} bad rows left out and recorded:")
        for b in bad[:20]:
            print(f"    line {b['line']}: {b['reason']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.store import list_datasets

    cli = _cli()
    data = list_datasets(cli.open_catalog(args))
    if args.json:
        cli.print_json([{"name": d.name, "versions": [v.to_json() for v in d.versions]}
                         for d in data])
        return 0
    if not data:
        print("No datasets yet. 'llmops dataset import FILE' adds one.")
        return 0
    print(f"{'dataset':<32} {'rows':>8} {'shape':<18} {'train/val':<12} sha256")
    for d in data:
        for v in d.versions:
            split = f"{v.split.get('train_rows', v.rows)}/{v.split.get('validation_rows', 0)}"
            print(f"{v.ref:<32} {v.rows:>8} {v.shape:<18} {split:<12} {v.sha256[:12]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.store import read_rows, resolve_version

    cli = _cli()
    version = resolve_version(cli.open_catalog(args), args.dataset)
    rows = read_rows(version, args.offset, args.rows)
    if args.json:
        cli.print_json(version.to_json() | {"preview": rows})
        return 0
    md = version.metadata
    print(f"{version.ref}  ({version.rows} rows, shape {version.shape}, format {version.format})")
    print(f"  sha256 {version.sha256}")
    print(f"  source {version.source}  (sha256 {version.source_sha256[:16]}…)")
    print(f"  mapping {version.mapping}")
    print(f"  split {version.split.get('train_rows')} train / {version.split.get('validation_rows')}"
          f" validation, fraction {version.split.get('validation_fraction')}, seed "
          f"{version.split.get('seed')}")
    print(f"  duplicates {md.get('duplicates', 0)}, empty rows {md.get('empty_rows', 0)}, "
          f"blank lines {md.get('blank_lines', 0)}, bad rows {len(md.get('bad_rows', []))}")
    for b in md.get("bad_rows", [])[:20]:
        print(f"    line {b['line']}: {b['reason']}")
    import json

    for i, r in enumerate(rows, start=args.offset):
        text = json.dumps(r, ensure_ascii=False)
        print(f"  [{i}] {text[:200]}{'…' if len(text) > 200 else ''}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.stats import dataset_stats, load_tokenizer, tokenizer_dir
    from llmops_desktop.datasets.store import resolve_version

    cli = _cli()
    catalog = cli.open_catalog(args)
    version = resolve_version(catalog, args.dataset)
    tok = load_tokenizer(tokenizer_dir(catalog, args.model)) if args.model else None
    stats = dataset_stats(version, tokenizer=tok, max_len=args.max_len, bins=args.bins)
    if args.json:
        cli.print_json(stats)
        return 0
    print(f"{stats['dataset']}: {stats['rows']} rows, {stats['duplicates']} duplicates, "
          f"{stats['empty_rows']} empty, {stats['bad_rows']} bad rows recorded")
    if "tokens" in stats:
        t = stats["tokens"]
        print(f"tokens ({args.model}): min {t['min']}, mean {t['mean']}, p50 {t['p50']}, "
              f"p90 {t['p90']}, p99 {t['p99']}, max {t['max']}; {t['total']} in all")
        if "rows_over_max_len" in stats:
            print(f"rows longer than {stats['max_len']} tokens: {stats['rows_over_max_len']}")
        _print_histogram(stats["histogram"])
    return 0


def _print_histogram(hist: dict[str, list[float]]) -> None:
    counts, edges = hist["counts"], hist["edges"]
    top = max(counts) if counts else 0
    for i, c in enumerate(counts):
        bar = "█" * (round(40 * c / top) if top else 0)
        print(f"  {edges[i]:8.0f}–{edges[i + 1]:<8.0f} {c:>7} {bar}")


def _split(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.store import set_split

    cli = _cli()
    version = set_split(cli.open_catalog(args), args.dataset, args.validation, args.seed)
    if args.json:
        cli.print_json(version.to_json(with_indices=True))
        return 0
    print(f"{version.ref}: {version.split['train_rows']} train / "
          f"{version.split['validation_rows']} validation (seed {args.seed})")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from llmops_desktop.datasets.store import remove_version

    cli = _cli()
    version = remove_version(cli.open_catalog(args), args.dataset)
    if args.json:
        cli.print_json({"removed": version.ref})
    else:
        print(f"removed {version.ref}")
    return 0


_ACTIONS: dict[str, Any] = {"import": _import, "list": _list, "show": _show, "stats": _stats,
                            "split": _split, "rm": _rm}


def register(add) -> None:
    from llmops_desktop.datasets.shapes import SHAPES

    sp = add("dataset", cmd_dataset, "fine-tuning datasets: import, list, show, stats, split")
    sub = sp.add_subparsers(dest="dataset_action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="machine-readable output on stdout")
        return p

    p = action("import", "import a JSONL, JSON, CSV or Parquet file as a new dataset version")
    p.add_argument("path")
    p.add_argument("--name", help="dataset name (default: the file's name)")
    p.add_argument("--format", choices=("jsonl", "json", "csv", "parquet"),
                   help="file format (default: from the extension)")
    p.add_argument("--shape", choices=tuple(SHAPES),
                   help="row shape (default: recognised from the columns)")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="which column holds a field when the names differ, e.g. "
                        "prompt=question (repeatable)")
    p.add_argument("--keep-good-rows", action="store_true",
                   help="import the rows that fit and record the bad ones (default: refuse)")
    p.add_argument("--validation", type=float, default=0.1,
                   help="fraction of rows held out for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    action("list", "list datasets and their versions")
    p = action("show", "a version's details and its first rows")
    p.add_argument("dataset", help="NAME (latest version), NAME@VERSION or id")
    p.add_argument("--rows", type=int, default=5, help="rows to show (default 5)")
    p.add_argument("--offset", type=int, default=0)
    p = action("stats", "rows, duplicates, empty rows; token lengths with --model")
    p.add_argument("dataset")
    p.add_argument("--model", help="count tokens with this catalog model's tokenizer")
    p.add_argument("--max-len", type=int, help="also count rows longer than this many tokens")
    p.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    p = action("split", "set a version's train/validation split (deterministic for a seed)")
    p.add_argument("dataset")
    p.add_argument("--validation", type=float, default=0.1, help="fraction held out")
    p.add_argument("--seed", type=int, default=0)
    p = action("rm", "remove a dataset version and its stored rows")
    p.add_argument("dataset")

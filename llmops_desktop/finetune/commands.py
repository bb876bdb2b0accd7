"""``llmops finetune``, ``llmops merge`` and ``llmops lora-gguf``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _cli():
    from llmops_desktop.cli import common as cli

    return cli


def build_options(args: argparse.Namespace, base: Any) -> Any:
    """Defaults, then the defaults for the base's size, then what the user gave."""
    from llmops_desktop.finetune.config import FinetuneOptions, defaults_for, model_parameters

    values = FinetuneOptions().to_dict()
    values.update(defaults_for(model_parameters(base.path, base.metadata)))
    for name in values:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    opts = FinetuneOptions.from_dict(values)
    opts.check()
    return opts


def _is_data_file(value: str) -> bool:
    from pathlib import Path

    from llmops_desktop.datasets.formats import _SUFFIXES

    path = Path(value).expanduser()
    return path.suffix.lower() in _SUFFIXES and path.is_file()


def dataset_from_file(catalog: Any, args: argparse.Namespace) -> Any:
    """Import a data file as a dataset version first (as LLaMA-Factory users expect to pass
    one), saying on stderr what was imported and which rows were bad."""
    from pathlib import Path

    from llmops_desktop.datasets.store import BadRowsError, import_dataset

    path = Path(args.dataset).expanduser()
    try:
        version = import_dataset(catalog, path, keep_good_rows=args.keep_good_rows)
    except BadRowsError as exc:
        print(f"{path.name} has {len(exc.bad_rows)} bad row(s); nothing was imported:",
              file=sys.stderr)
        for bad in exc.bad_rows[:20]:
            print(f"  line {bad.line}: {bad.reason}", file=sys.stderr)
        print("Fix them, or add --keep-good-rows to train on the others.", file=sys.stderr)
        raise
    print(f"imported {path.name} as dataset {version.ref}: {version.rows} rows, shape "
          f"{version.shape}", file=sys.stderr)
    bad = version.metadata.get("bad_rows", [])
    if bad:
        print(f"  {len(bad)} bad row(s) left out and recorded:", file=sys.stderr)
        for b in bad[:20]:
            print(f"    line {b['line']}: {b['reason']}", file=sys.stderr)
    return version


def cmd_finetune(args: argparse.Namespace) -> int:
    from llmops_desktop.errors import CancelledError
    from llmops_desktop.finetune.memory import describe, estimate_memory
    from llmops_desktop.finetune.task import FinetuneRequest

    cli = _cli()
    catalog = cli.open_catalog(args)
    if args.resume is not None:
        request = FinetuneRequest.resume(catalog, args.resume).check(catalog)
    else:
        if not args.base or not args.dataset:
            raise SystemExit("llmops finetune: give BASE and DATASET (or --resume JOB_ID)")
        from llmops_desktop.datasets.store import resolve_version

        base = catalog.resolve(args.base)
        version = (dataset_from_file(catalog, args) if _is_data_file(args.dataset)
                   else resolve_version(catalog, args.dataset))
        opts = build_options(args, base)
        request = FinetuneRequest(base_id=base.id, dataset_id=version.id, options=opts)
        request.check(catalog)
        if args.estimate:
            est = estimate_memory(base.path, opts, metadata=base.metadata)
            if args.json:
                cli.print_json(est.to_json() | {"options": opts.to_dict()})
            else:
                print(describe(est))
            return 0
    try:
        result = cli.run_job_in_terminal(catalog, request, quiet=args.json)
    except CancelledError:
        job = next((j for j in catalog.jobs(limit=20) if j.kind == "finetune"), None)
        if job is not None:
            print(f"stopped; continue with: llmops finetune --resume {job.id}", file=sys.stderr)
        raise
    adapter = catalog.artifact(result["artifact_id"])
    if args.json:
        cli.print_json(result | {"artifact": adapter.to_json()})
        return 0
    ppl = result.get("perplexity", {})
    print(f"made {adapter.ref} (artifact #{adapter.id}), a LoRA adapter of "
          f"{adapter.metadata.get('base_model')}, after {result.get('steps')} steps")
    print(f"  final training loss {result.get('final_loss'):.4f}"
          + (f", validation loss {result['final_val_loss']:.4f}"
             if result.get("final_val_loss") is not None else ""))
    if ppl:
        print("  validation perplexity: " + "  ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    print(f"  merge it: llmops merge {adapter.ref}; serve it: llmops serve {adapter.ref}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.finetune.merge import MergeRequest

    cli = _cli()
    catalog = cli.open_catalog(args)
    adapter = catalog.resolve(args.adapter)
    request = MergeRequest(adapter_id=adapter.id,
                           **values_from_args(args, MergeRequest)).check(catalog)
    result = cli.run_job_in_terminal(catalog, request, quiet=args.json)
    return cli.report_artifact(args, catalog.artifact(result["artifact_id"]), "merged", "")


def cmd_lora_gguf(args: argparse.Namespace) -> int:
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.finetune.merge import LoraGgufRequest

    cli = _cli()
    catalog = cli.open_catalog(args)
    adapter = catalog.resolve(args.adapter)
    request = LoraGgufRequest(adapter_id=adapter.id,
                              **values_from_args(args, LoraGgufRequest)).check(catalog)
    result = cli.run_job_in_terminal(catalog, request, quiet=args.json)
    return cli.report_artifact(args, catalog.artifact(result["artifact_id"]), "wrote", "")


def add_option_arguments(p: argparse.ArgumentParser) -> None:
    """A flag per fine-tune option, from the same specification as the page's form."""
    from llmops_desktop.fields import add_arguments
    from llmops_desktop.finetune.config import FinetuneOptions, defaults_for

    sized = set(defaults_for(None))  # the options whose default follows the model's size

    def suffix(s: Any) -> str:
        if s.name in sized:
            return f" (default {s.default}, or by model size)"
        return "" if s.default in ("", None) else f" (default {s.default})"

    add_arguments(p, FinetuneOptions, help_suffix=suffix)


def register(add) -> None:
    from llmops_desktop.fields import add_arguments
    from llmops_desktop.finetune.merge import LoraGgufRequest, MergeRequest

    p = add("finetune", cmd_finetune,
            "train a LoRA/QLoRA adapter of an HF model on a dataset (resumable job)")
    p.add_argument("base", nargs="?", help="the base model: id, NAME or NAME@VERSION")
    p.add_argument("dataset", nargs="?", help="the dataset: NAME, NAME@VERSION or id, or a "
                   ".jsonl/.json/.csv/.parquet file (imported as a dataset version first)")
    p.add_argument("--keep-good-rows", action="store_true",
                   help="with a data file: train on its good rows, recording the bad ones "
                        "(default: refuse a file with bad rows, listing them)")
    p.add_argument("--resume", type=int, metavar="JOB_ID",
                   help="continue a cancelled, failed or killed fine-tune from its last "
                        "checkpoint (same options, same result)")
    p.add_argument("--estimate", action="store_true",
                   help="print the memory estimate and advice; train nothing")
    add_option_arguments(p)
    p = add("merge", cmd_merge, "merge a LoRA adapter into its base (a new HF artifact)")
    p.add_argument("adapter")
    add_arguments(p, MergeRequest)
    p = add("lora-gguf", cmd_lora_gguf,
            "write a LoRA adapter as a llama.cpp LoRA GGUF (served on top of the base's GGUF)")
    p.add_argument("adapter")
    add_arguments(p, LoraGgufRequest)

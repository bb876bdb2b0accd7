"""``llmops prompt create|list|show|diff|alias``: versioned prompts from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError


def _text(inline: str | None, path: str | None, what: str) -> str | None:
    if inline is not None and path is not None:
        raise InvalidInputError(f"Give the {what} inline or as a file, not both.")
    if path is None:
        return inline
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read the {what} file {path} ({exc}).") from None


def cmd_create(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.prompts.store import create_prompt

    catalog = cli.open_catalog(args)
    template = _text(args.template, args.template_file, "template")
    if not template:
        raise InvalidInputError("Give the message template: --template TEXT or "
                                "--template-file FILE (with {{variables}}).")
    schema = None
    if args.schema:
        try:
            schema = json.loads(Path(args.schema).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"Cannot read the response schema {args.schema} "
                                    f"({exc}); it must be a JSON Schema file.") from None
    artifact = catalog.resolve(args.artifact).ref if args.artifact else ""
    params = {k: getattr(args, k) for k in ("temperature", "top_p", "max_tokens", "seed")}
    v = create_prompt(catalog, args.name, template,
                      system_prompt=_text(args.system, args.system_file, "system prompt") or "",
                      params=params, response_schema=schema, artifact_ref=artifact,
                      note=args.note or "", alias=args.alias)
    if args.json:
        cli.print_json(v.to_json())
    else:
        print(f"{v.ref} (sha256 {v.sha256[:12]}; variables: {', '.join(v.variables) or 'none'})"
              + (f"; {args.alias} -> {v.version}" if args.alias else ""))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.prompts.store import list_prompts

    rows = list_prompts(cli.open_catalog(args))
    if args.json:
        cli.print_json(rows)
        return 0
    for r in rows:
        tags = ", ".join(f"{a} -> {v}" for a, v in r["aliases"].items())
        print(f"{r['name']}@{r['latest']}  {r['versions']} version(s)"
              + (f"  [{tags}]" if tags else ""))
    if not rows:
        print("No prompts yet: 'llmops prompt create NAME --template TEXT' makes one.",
              file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.prompts.store import aliases, resolve_prompt, usage_by_version

    catalog = cli.open_catalog(args)
    v, _ = resolve_prompt(catalog, args.prompt, key="show")
    table = aliases(catalog, v.name)
    usage = usage_by_version(catalog, v.name)
    if args.json:
        cli.print_json({**v.to_json(), "aliases": {a: {"version": n, "weight": w}
                                                    for a, (n, w) in table.items()},
                        "usage": usage})
        return 0
    print(f"{v.ref}  sha256 {v.sha256[:12]}  {v.created_at[:19]} by {v.user or '?'}"
          + (f"  for {v.artifact_ref}" if v.artifact_ref else ""))
    if v.system_prompt:
        print(f"system: {v.system_prompt}")
    print(f"template: {v.template}")
    print(f"variables: {', '.join(v.variables) or 'none'}")
    if v.params:
        print("settings: " + ", ".join(f"{k}={val}" for k, val in v.params.items()))
    if v.response_schema is not None:
        print("response schema: " + json.dumps(v.response_schema))
    for a, (n, w) in table.items():
        print(f"alias {a} -> {n}" + (f" (split weight {w:g})" if w else ""))
    for ref, u in sorted(usage.items()):
        print(f"{ref}: {u.get('requests', 0)} requests, {u.get('thumbs_up') or 0} up, "
              f"{u.get('thumbs_down') or 0} down")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.prompts.store import diff, resolve_prompt

    catalog = cli.open_catalog(args)
    a, _ = resolve_prompt(catalog, args.a, key="diff")
    b_spec = args.b if "@" in args.b else f"{a.name}@{args.b}"
    b, _ = resolve_prompt(catalog, b_spec, key="diff")
    text = diff(a, b)
    print(text or f"{a.ref} and {b.ref} are the same.")
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.prompts.store import set_alias

    catalog = cli.open_catalog(args)
    set_alias(catalog, args.name, args.alias, args.version, weight=args.weight)
    print(f"{args.name}: {args.alias} -> {args.version}"
          + (f" (split weight {args.weight:g})" if args.weight is not None else ""))
    return 0


def register(add: Any) -> None:
    p = add("prompt", None, "versioned prompts: create, list, show, diff, alias")
    sub = p.add_subparsers(dest="prompt_command", required=True, metavar="ACTION")

    c = sub.add_parser("create", help="store the next version of a prompt")
    c.set_defaults(fn=cmd_create)
    c.add_argument("name")
    c.add_argument("--template", help="the user's message, with {{variables}}")
    c.add_argument("--template-file", metavar="FILE", help="the template from a file ('-': stdin)")
    c.add_argument("--system", help="system prompt (may hold {{variables}} too)")
    c.add_argument("--system-file", metavar="FILE")
    c.add_argument("--temperature", type=float)
    c.add_argument("--top-p", type=float)
    c.add_argument("--max-tokens", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--schema", metavar="FILE", help="a JSON Schema the reply should follow")
    c.add_argument("--artifact", help="the model it was written for (NAME@VERSION or id)")
    c.add_argument("--note", help="what changed in this version")
    c.add_argument("--alias", help="point this alias (e.g. candidate) at the new version")
    c.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", help="every prompt, its latest version and aliases")
    ls.set_defaults(fn=cmd_list)
    ls.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="one version (NAME, NAME@N or NAME@ALIAS), its aliases "
                                    "and requests and ratings per version")
    s.set_defaults(fn=cmd_show)
    s.add_argument("prompt")
    s.add_argument("--json", action="store_true")

    d = sub.add_parser("diff", help="what changed between two versions (NAME@A B)")
    d.set_defaults(fn=cmd_diff)
    d.add_argument("a", metavar="NAME@A")
    d.add_argument("b", metavar="B", help="a version, an alias, or NAME@B")

    a = sub.add_parser("alias", help="point an alias at a version; --weight sets its share "
                                     "of a split for requests that name no alias")
    a.set_defaults(fn=cmd_alias)
    a.add_argument("name")
    a.add_argument("alias")
    a.add_argument("version", type=int)
    a.add_argument("--weight", type=float, help="split weight (0: not in the split)")

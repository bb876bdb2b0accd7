"""``llmops arena ratings|list``: the blind arena's ratings and its stored picks."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_arena(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli

    return int(_ACTIONS[args.arena_action](args, cli.open_catalog(args), cli) or 0)


def _ratings(args: argparse.Namespace, catalog: Any, cli: Any) -> int:
    from llmops_desktop.errors import InvalidInputError
    from llmops_desktop.evaluate.arena import arena_ratings

    if args.resamples < 1:
        raise InvalidInputError("--resamples must be at least 1.")
    ratings = arena_ratings(catalog, since=args.since, resamples=args.resamples, seed=args.seed)
    if args.json:
        cli.print_json([r.to_json() for r in ratings])
        return 0
    if not ratings:
        print("No arena picks yet. In the Playground choose 'Side by side (blind)', ask two "
              "deployments and pick the better reply.")
        return 0
    print(f"{'#':>3} {'artifact':<36} {'rating':>7} {'95% interval':>15} {'games':>6} "
          f"{'wins':>5} {'losses':>6} {'ties':>5}")
    for rank, r in enumerate(ratings, 1):
        print(f"{rank:>3} {r.player[:36]:<36} {r.rating:>7.0f} "
              f"{f'[{r.ci_low:.0f}, {r.ci_high:.0f}]':>15} {r.games:>6} {r.wins:>5} "
              f"{r.losses:>6} {r.ties:>5}")
    print("Bradley-Terry ratings on the Elo scale (mean 1000; 400 points = 10 to 1 odds), "
          f"95% intervals from {args.resamples} bootstrap resamples of the battles.")
    return 0


def _list(args: argparse.Namespace, catalog: Any, cli: Any) -> int:
    from llmops_desktop.evaluate.arena import battles

    rows = battles(catalog, since=args.since, limit=args.limit)
    if args.json:
        cli.print_json([b.to_json() for b in rows])
        return 0
    if not rows:
        print("No arena picks yet.")
        return 0
    for b in rows:
        pick = "tie" if b.winner == "tie" else f"{b.side(b.winner).player} won"
        prompt = " ".join(b.prompt.split())
        print(f"#{b.id:<5} {b.created_at[:19].replace('T', ' ')}  {b.a.player} vs "
              f"{b.b.player}: {pick}  — {prompt[:60]}{'…' if len(prompt) > 60 else ''}")
    return 0


_ACTIONS: dict[str, Any] = {"ratings": _ratings, "list": _list}


def register(add) -> None:
    from llmops_desktop.evaluate.arena import RESAMPLES

    sp = add("arena", cmd_arena, "the blind arena: ratings per artifact from the picks, and "
                                 "the stored picks")
    sub = sp.add_subparsers(dest="arena_action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="machine-readable output on stdout")
        p.add_argument("--since", metavar="DATE",
                       help="only picks from this date (UTC, YYYY-MM-DD[THH:MM])")
        return p

    p = action("ratings", "Bradley-Terry ratings per artifact with 95%% bootstrap intervals, "
                          "games, wins, losses and ties")
    p.add_argument("--resamples", type=int, default=RESAMPLES,
                   help=f"bootstrap resamples for the intervals (default {RESAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p = action("list", "the stored picks, oldest first")
    p.add_argument("--limit", type=int, default=50, help="the newest N picks (default 50)")

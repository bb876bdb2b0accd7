"""The blind arena's core: picks stored in the catalog, Bradley-Terry ratings with bootstrap
intervals, and picks as preference data (issue #18 item 5, #19 item 3)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.store import read_rows
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.evaluate.arena import (
    Battle,
    Side,
    arena_ratings,
    battles,
    bradley_terry,
    rate_battles,
    record_battle,
    side_shown,
)
from llmops_desktop.serving.feedback import Feedback, rate
from llmops_desktop.serving.feedback_data import build_rows, feedback_to_dataset
from tests.gateway_fixtures import two_models


def _battle(a: str, b: str, winner: str, *, shown_left: str = "a", prompt: str = "Hi?",
            reply_a: str = "one", reply_b: str = "two", artifacts=(None, None)) -> Battle:
    return Battle(prompt=prompt, messages=[{"role": "user", "content": prompt}],
                  a=Side(reply_a, artifact_id=artifacts[0], artifact_ref=a, model=a),
                  b=Side(reply_b, artifact_id=artifacts[1], artifact_ref=b, model=b),
                  shown_left=shown_left, winner=winner)


def _record(catalog: Catalog, n: int, a: str, b: str, winner: str) -> None:
    for i in range(n):  # the side shown left alternates, as the random order would
        record_battle(catalog, _battle(a, b, winner, shown_left="ab"[i % 2]))


def test_a_clearly_stronger_artifact_ranks_first_with_an_interval_apart(catalog) -> None:
    _record(catalog, 30, "alpha@1", "beta@1", "a")
    _record(catalog, 5, "alpha@1", "beta@1", "b")
    _record(catalog, 3, "beta@1", "alpha@1", "tie")
    first, second = arena_ratings(catalog)
    assert (first.player, second.player) == ("alpha@1", "beta@1")
    assert (first.games, first.wins, first.losses, first.ties) == (38, 30, 5, 3)
    assert (second.games, second.wins, second.losses, second.ties) == (38, 5, 30, 3)
    assert first.ci_low < first.rating < first.ci_high
    assert first.ci_low > second.ci_high  # the data say alpha is better
    assert math.isclose(first.rating + second.rating, 2000)  # the mean is 1000
    again = arena_ratings(catalog)  # seeded: the same intervals every time
    assert [(r.ci_low, r.ci_high) for r in again] == [(first.ci_low, first.ci_high),
                                                       (second.ci_low, second.ci_high)]


def test_few_battles_leave_the_intervals_overlapping(catalog) -> None:
    _record(catalog, 3, "alpha@1", "beta@1", "a")
    _record(catalog, 2, "alpha@1", "beta@1", "b")
    first, second = arena_ratings(catalog)
    assert first.player == "alpha@1" and first.rating > second.rating
    assert first.ci_low < second.ci_high  # three wins to two proves nothing


def test_ties_count_half_each_way() -> None:
    wins_and_ties = [_battle("x", "y", "a")] * 10 + [_battle("x", "y", "tie")] * 10
    wins_only = [_battle("x", "y", "a")] * 15 + [_battle("x", "y", "b")] * 5
    with_ties, plain = rate_battles(wins_and_ties), rate_battles(wins_only)
    assert [r.rating for r in with_ties] == pytest.approx([r.rating for r in plain])
    assert (with_ties[0].wins, with_ties[0].ties, with_ties[1].losses) == (10, 10, 10)
    # Without the prior, 15 of 20 is 3 to 1 odds: 400·log10(3) points apart.
    x, y = rate_battles(wins_and_ties, prior=0, resamples=10)
    assert x.rating - y.rating == pytest.approx(400 * math.log10(3))
    even = rate_battles([_battle("x", "y", "tie")] * 6)
    assert [r.rating for r in even] == pytest.approx([1000, 1000])


def test_the_fit_is_the_maximum_likelihood_and_ranks_by_strength() -> None:
    rng = np.random.default_rng(3)
    truth = np.array([1.5, 0.5, 0.0, -1.0])
    games = []
    for _ in range(2000):
        i, j = rng.choice(4, 2, replace=False)
        won = rng.random() < 1 / (1 + math.exp(truth[j] - truth[i]))
        games.append(_battle(f"m{i}", f"m{j}", "a" if won else "b"))
    ratings = rate_battles(games, prior=0, resamples=50)
    assert [r.player for r in ratings] == ["m0", "m1", "m2", "m3"]
    # At the maximum, each player's expected wins equal its wins (the score equations).
    wins = np.zeros((4, 4))
    for g in games:
        i, j = int(g.a.player[1]), int(g.b.player[1])
        wins[(i, j) if g.winner == "a" else (j, i)] += 1
    p = bradley_terry(wins, prior=0)
    n = wins + wins.T
    expected = (n * p[:, None] / (p[:, None] + p[None, :])).sum(1)
    assert expected == pytest.approx(wins.sum(1), rel=1e-6)
    assert {r.player: r.rating for r in ratings}["m0"] == pytest.approx(
        1000 + 400 * math.log10(p[0]))


def test_a_pick_maps_the_shown_label_to_its_side_and_bad_picks_are_refused(catalog) -> None:
    assert side_shown("A", "a") == "a" and side_shown("B", "a") == "b"
    assert side_shown("A", "b") == "b" and side_shown("B", "b") == "a"
    with pytest.raises(InvalidInputError):
        side_shown("C", "a")
    with pytest.raises(InvalidInputError):
        record_battle(catalog, _battle("x", "y", "both"))
    with pytest.raises(InvalidInputError, match="Both replies"):
        record_battle(catalog, _battle("x", "y", "a", reply_b="  "))
    stored = record_battle(catalog, _battle("x", "y", "b", shown_left="b"))
    assert stored.id == 1 and stored.created_at and stored.winner == "b"
    assert battles(catalog) == [stored] and battles(catalog, since="2999-01-01") == []


def test_preference_data_includes_arena_picks(catalog, demo_gguf) -> None:
    alpha, beta = two_models(catalog, demo_gguf)
    ids = (alpha.id, beta.id)
    won_a = record_battle(catalog, _battle(alpha.ref, beta.ref, "a", prompt="Capital?",
                                           reply_a="Paris.", reply_b="Lyon.", artifacts=ids))
    record_battle(catalog, _battle(alpha.ref, beta.ref, "tie", prompt="Hello?",
                                   reply_a="Hi.", reply_b="Hey.", artifacts=ids))
    won_b = record_battle(catalog, _battle(alpha.ref, beta.ref, "b", shown_left="b",
                                           prompt="1+2?", reply_a="Two.", reply_b="Three.",
                                           artifacts=ids))
    rate(catalog, Feedback(reply_id="r1", rating=-1, reply="Blue.", prompt="Sky?",
                           messages=[{"role": "user", "content": "Sky?"}], correction="Grey."))

    version = feedback_to_dataset(catalog, name="prefs", kind="preference")
    rows = read_rows(version)
    assert {"prompt": [{"role": "user", "content": "Capital?"}], "chosen": "Paris.",
            "rejected": "Lyon."} in rows
    assert {"prompt": [{"role": "user", "content": "1+2?"}], "chosen": "Three.",
            "rejected": "Two."} in rows
    assert {"prompt": [{"role": "user", "content": "Sky?"}], "chosen": "Grey.",
            "rejected": "Blue."} in rows
    assert len(rows) == 3  # the tie says nothing about which is better
    provenance = version.metadata["from_feedback"]
    assert provenance["arena_ids"] == [won_a.id, won_b.id] and provenance["ids"] == [1]

    assert build_rows(catalog, kind="preference", prompt="geo").battle_ids == []
    assert build_rows(catalog, kind="preference", since="2999-01-01").rows == []
    assert len(build_rows(catalog, kind="preference", artifact_id=beta.id).rows) == 2
    assert build_rows(catalog, kind="sft").battle_ids == []


def test_cli_arena_ratings_and_list(catalog, home, capsys) -> None:
    from llmops_desktop.cli import main

    assert main(["--home", str(home.root), "arena", "ratings"]) == 0
    assert "No arena picks yet" in capsys.readouterr().out
    _record(catalog, 4, "alpha@1", "beta@1", "a")
    _record(catalog, 1, "alpha@1", "beta@1", "tie")
    assert main(["--home", str(home.root), "arena", "ratings", "--json",
                 "--resamples", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["player"] for r in out] == ["alpha@1", "beta@1"]
    assert (out[0]["wins"], out[0]["ties"], out[1]["losses"]) == (4, 1, 4)
    assert out[0]["ci_low"] <= out[0]["rating"] <= out[0]["ci_high"]
    assert main(["--home", str(home.root), "arena", "ratings"]) == 0
    text = capsys.readouterr().out
    assert "alpha@1" in text.splitlines()[1] and "Bradley-Terry" in text
    assert main(["--home", str(home.root), "arena", "list", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "tie" in lines[-1] and lines[0].startswith("#4")
    assert main(["--home", str(home.root), "arena", "ratings", "--resamples", "0"]) == 5

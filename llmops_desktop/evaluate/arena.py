"""The blind arena: two replies to one prompt, a person's pick, and ratings from the picks.

A battle (catalog step 12, ``arena_battles``) holds the prompt, the two replies, each side's
artifact, deployment, model name and response id, which side was shown on the left as "A",
and the pick: ``a``, ``b`` or ``tie``. Sides ``a`` and ``b`` are the contestants in the order
they were chosen; the random order on screen is ``shown_left``, so a pick of the reply shown
as "A" is stored as the side that was shown there (:func:`side_shown`).

Ratings are a Bradley-Terry model fitted by maximum likelihood (Newton's method on log
strengths): each player has a strength ``p`` and P(i beats j) = p_i / (p_i + p_j); unlike
online Elo updates, the fit does not depend on the order the battles came in. A tie counts
as half a win each way. Each player also plays one virtual game against a fixed reference
player, drawn half and half: a weak prior that keeps the strength of a player with no win
(or no loss) finite and holds a comparison graph in pieces together; it pulls ratings
toward one another when there are few battles and hardly matters at a hundred. Strengths
are shown on the Elo scale, ``1000 + 400·log10(p)``, shifted so that the players' mean is
1000: a 400 point gap means 10 to 1 odds. The 95 % intervals come from a bootstrap over
battles (drawn with replacement, the model fitted again; the 2.5th and 97.5th
percentiles), seeded so the same picks give the same intervals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.catalog.catalog import current_user
from llmops_desktop.errors import InvalidInputError

SIDES = ("a", "b")
WINNERS = ("a", "b", "tie")
BASE_RATING = 1000.0
SCALE = 400.0  # Elo's: a gap of SCALE points is 10 to 1 odds
PRIOR_GAMES = 1.0  # virtual games of each player against the reference, drawn half and half
RESAMPLES = 1000
LEVEL = 0.95
_TOLERANCE = 1e-9  # largest change of a log strength between Newton steps when done
_MAX_STEPS = 200
_COMMENT_CHARS = 4000


@dataclass(frozen=True)
class Side:
    """One contestant of a battle: who answered and what."""

    reply: str
    artifact_id: int | None = None
    artifact_ref: str = ""
    deployment_id: int | None = None
    model: str = ""
    response_id: str = ""  # the server's id of the reply (its request_log row)

    @property
    def player(self) -> str:
        """Whom ratings count this side as: the artifact, or the model name outside the
        catalog (a gateway model, say)."""
        return self.artifact_ref or self.model


@dataclass(frozen=True)
class Battle:
    """Two replies to one conversation and which one the person preferred."""

    prompt: str
    a: Side
    b: Side
    shown_left: str  # "a" or "b": the side shown on the left, as "A"
    winner: str  # "a", "b" or "tie"
    messages: list[dict[str, str]] = field(default_factory=list)  # without the system prompt
    system_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    id: int | None = None
    created_at: str = ""
    user: str = ""

    def side(self, name: str) -> Side:
        return self.a if name == "a" else self.b

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def side_shown(label: str, shown_left: str) -> str:
    """The side (``a``/``b``) that was shown as ``label`` ("A" on the left, "B" on the
    right), given which side was shown left."""
    if label not in ("A", "B") or shown_left not in SIDES:
        raise InvalidInputError(f"No reply shown as {label!r}: the arena shows A and B.")
    other = "b" if shown_left == "a" else "a"
    return shown_left if label == "A" else other


def record_battle(catalog: Catalog, battle: Battle) -> Battle:
    """Store a pick; returns the battle with its id and time."""
    if battle.winner not in WINNERS:
        raise InvalidInputError(f"A pick is one of {', '.join(WINNERS)}, not {battle.winner!r}.")
    if battle.shown_left not in SIDES:
        raise InvalidInputError("shown_left must be 'a' or 'b'.")
    if not battle.a.reply.strip() or not battle.b.reply.strip():
        raise InvalidInputError("Both replies must have some text before one can be picked: "
                                "ask again.")
    row = {"created_at": utcnow(), "user": current_user(), "system_prompt": battle.system_prompt,
           "messages": json.dumps(battle.messages, ensure_ascii=False),
           "prompt": battle.prompt, "params": json.dumps(battle.params),
           "shown_left": battle.shown_left, "winner": battle.winner,
           "comment": battle.comment[:_COMMENT_CHARS]}
    for name in SIDES:
        s = battle.side(name)
        row |= {f"artifact_{name}": s.artifact_id, f"artifact_ref_{name}": s.artifact_ref,
                f"deployment_{name}": s.deployment_id, f"model_{name}": s.model,
                f"response_{name}": s.response_id, f"reply_{name}": s.reply}
    with catalog.transaction() as conn:
        cur = conn.execute(f"INSERT INTO arena_battles ({','.join(row)}) "
                           f"VALUES ({','.join('?' * len(row))})", tuple(row.values()))
        battle_id = int(cur.lastrowid)
    catalog.audit("arena-pick", artifact_id=battle.side(battle.winner).artifact_id
                  if battle.winner != "tie" else None,
                  details={"battle": battle_id, "winner": battle.winner,
                           "a": battle.a.player, "b": battle.b.player})
    return battles(catalog, ids=[battle_id])[0]


def battles(catalog: Catalog, *, since: str | None = None, artifact_id: int | None = None,
            ids: Sequence[int] | None = None, limit: int | None = None) -> list[Battle]:
    """Stored battles, oldest first (the newest ``limit`` of them); ``since`` an ISO date
    or time (UTC); ``artifact_id`` battles it took part in."""
    where, params = [], []  # type: list[str], list[Any]
    if since:
        where.append("created_at >= ?")
        params.append(since)
    if artifact_id is not None:
        where.append("(artifact_a = ? OR artifact_b = ?)")
        params += [artifact_id, artifact_id]
    if ids is not None:
        where.append(f"id IN ({','.join('?' * len(ids))})")
        params += list(ids)
    sql = "SELECT * FROM arena_battles" + (" WHERE " + " AND ".join(where) if where else "")
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?)"
        params.append(int(limit))
    return [_battle(r) for r in catalog.rows(sql + " ORDER BY id", params)]


def _battle(r: dict[str, Any]) -> Battle:
    sides = {name: Side(reply=r[f"reply_{name}"], artifact_id=r[f"artifact_{name}"],
                        artifact_ref=r[f"artifact_ref_{name}"],
                        deployment_id=r[f"deployment_{name}"], model=r[f"model_{name}"],
                        response_id=r[f"response_{name}"]) for name in SIDES}
    return Battle(prompt=r["prompt"], a=sides["a"], b=sides["b"], shown_left=r["shown_left"],
                  winner=r["winner"], messages=json.loads(r["messages"] or "[]"),
                  system_prompt=r["system_prompt"], params=json.loads(r["params"] or "{}"),
                  comment=r["comment"], id=r["id"], created_at=r["created_at"], user=r["user"])


# ---- ratings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rating:
    """A player's Bradley-Terry rating (Elo scale), its 95 % interval and its record."""

    player: str  # the artifact's ref, or the model name of a model outside the catalog
    artifact_id: int | None
    rating: float
    ci_low: float
    ci_high: float
    games: int
    wins: int
    losses: int
    ties: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bradley_terry(wins: Any, *, prior: float = PRIOR_GAMES) -> Any:
    """Strengths (geometric mean 1) from ``wins[..., i, j]``: how often i beat j, ties
    counted half each way; batched over leading axes. The maximum of the likelihood times
    the prior (``prior`` virtual games of each player against a reference of strength 1,
    half won), by Newton's method on log strengths (the log-likelihood is concave; a step
    is capped so that a far start cannot overshoot)."""
    import numpy as np

    wins = np.asarray(wins, dtype=float)
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(-1) + prior / 2
    if prior <= 0 and np.any(won <= 0):
        raise InvalidInputError("A player without a win has no finite strength; use a prior.")
    theta = np.zeros(wins.shape[:-1])
    for _ in range(_MAX_STEPS):
        beat = 1.0 / (1.0 + np.exp(theta[..., None, :] - theta[..., :, None]))  # P(i beats j)
        ref = 1.0 / (1.0 + np.exp(-theta))  # P(i beats the reference)
        grad = won - (games * beat).sum(-1) - prior * ref
        info = games * beat * np.swapaxes(beat, -1, -2)  # minus the Hessian, off-diagonal
        hess = info - np.eye(theta.shape[-1]) * (info.sum(-1) + prior * ref * (1 - ref))[
            ..., None]
        step = np.clip((np.linalg.pinv(hess) @ grad[..., None])[..., 0], -2.0, 2.0)
        theta = theta - step
        theta = theta - theta.mean(-1, keepdims=True) * (prior <= 0)
        if np.max(np.abs(step)) < _TOLERANCE:
            break
    return np.exp(theta - theta.mean(-1, keepdims=True))


def elo_scale(strength: Any) -> Any:
    import numpy as np

    return BASE_RATING + SCALE * np.log10(strength)


def rate_battles(battle_list: Sequence[Battle], *, resamples: int = RESAMPLES, seed: int = 0,
                 prior: float = PRIOR_GAMES) -> list[Rating]:
    """Ratings of every player of ``battle_list`` (best first). A battle between two sides
    of the same player tells nothing and is left out."""
    import numpy as np

    games = [(b.a.player, b.b.player, b.winner, b) for b in battle_list
             if b.a.player and b.b.player and b.a.player != b.b.player]
    if not games:
        return []
    players = sorted({g[0] for g in games} | {g[1] for g in games})
    index = {name: i for i, name in enumerate(players)}
    k = len(players)
    # Battles fall in cells (i, j, result); a bootstrap draws cell counts, multinomially.
    cells: dict[tuple[int, int, str], int] = {}
    for a, b, winner, _ in games:
        key = (index[a], index[b], winner)
        cells[key] = cells.get(key, 0) + 1
    keys = list(cells)
    counts = np.array([cells[c] for c in keys], dtype=float)
    contribution = np.zeros((len(keys), k, k))
    for c, (i, j, winner) in enumerate(keys):
        score = {"a": 1.0, "b": 0.0, "tie": 0.5}[winner]
        contribution[c, i, j] += score
        contribution[c, j, i] += 1.0 - score
    point = elo_scale(bradley_terry(np.tensordot(counts, contribution, 1), prior=prior))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(games), counts / counts.sum(), size=max(1, resamples))
    boot = elo_scale(bradley_terry(np.tensordot(draws.astype(float), contribution, 1),
                                   prior=prior))
    low = np.percentile(boot, (1 - LEVEL) / 2 * 100, axis=0)
    high = np.percentile(boot, (1 + LEVEL) / 2 * 100, axis=0)
    record = {name: {"wins": 0, "losses": 0, "ties": 0, "artifact_id": None} for name in players}
    for a, b, winner, battle in games:
        for name, side in ((a, battle.a), (b, battle.b)):
            if side.artifact_id is not None:
                record[name]["artifact_id"] = side.artifact_id
        if winner == "tie":
            record[a]["ties"] += 1
            record[b]["ties"] += 1
        else:
            record[a if winner == "a" else b]["wins"] += 1
            record[b if winner == "a" else a]["losses"] += 1
    out = [Rating(player=name, artifact_id=record[name]["artifact_id"],
                  rating=float(point[i]), ci_low=float(low[i]), ci_high=float(high[i]),
                  games=record[name]["wins"] + record[name]["losses"] + record[name]["ties"],
                  wins=record[name]["wins"], losses=record[name]["losses"],
                  ties=record[name]["ties"]) for i, name in enumerate(players)]
    return sorted(out, key=lambda r: (-r.rating, r.player))


def arena_ratings(catalog: Catalog, *, since: str | None = None, resamples: int = RESAMPLES,
                  seed: int = 0) -> list[Rating]:
    """Ratings from every stored battle (since ``since``), best first."""
    return rate_battles(battles(catalog, since=since), resamples=resamples, seed=seed)


# ---- preference data -----------------------------------------------------------------------

def conversation(b: Battle) -> list[dict[str, str]]:
    """The messages both sides answered, with the system prompt first."""
    system = [{"role": "system", "content": b.system_prompt}] if b.system_prompt else []
    return system + [{"role": m["role"], "content": m["content"]} for m in b.messages]


def preference_rows(catalog: Catalog, *, since: str | None = None,
                    artifact_id: int | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """``{"prompt", "chosen", "rejected"}`` rows from the picks (a tie says nothing about
    which is better), and the battles they came from."""
    rows, used = [], []
    for b in battles(catalog, since=since, artifact_id=artifact_id):
        if b.winner == "tie":
            continue
        chosen, rejected = b.side(b.winner).reply, b.side("b" if b.winner == "a" else "a").reply
        prompt = conversation(b) or [{"role": "user", "content": b.prompt}]
        if chosen.strip() and rejected.strip() and chosen != rejected:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            used.append(int(b.id or 0))
    return rows, used

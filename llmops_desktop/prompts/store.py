"""Prompts in the catalog (schema step 10): immutable versions, moving aliases, splits.

A version is NAME@N (N = 1, 2, …); its content is hashed, and a version identical to the
latest one is refused rather than stored twice. An alias (``prod``, ``candidate``) names
one version and moves; it also has a weight: a request for ``prompt:NAME`` (no alias, no
version) goes to the aliases of positive weight in proportion (a split such as prod 90 /
candidate 10), else to ``prod``, else to the latest version. Which one a request gets is a
pure function of a key (the request's id), so a split is reproducible.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.catalog.catalog import current_user
from llmops_desktop.errors import ConflictError, InvalidInputError, NotFoundError
from llmops_desktop.prompts.templates import variables

PARAMS = ("temperature", "top_p", "max_tokens", "seed")  # the sampling settings a prompt sets
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_ALIAS = "prod"


class PromptNotFoundError(NotFoundError):
    """No such prompt, version or alias."""


@dataclass(frozen=True)
class PromptVersion:
    id: int
    name: str
    version: int
    template: str
    system_prompt: str
    params: dict[str, Any]
    response_schema: dict[str, Any] | None
    artifact_ref: str
    sha256: str
    note: str
    created_at: str
    user: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def variables(self) -> list[str]:
        return variables(self.system_prompt, self.template)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ref": self.ref, "variables": self.variables}


def check_name(name: str, what: str = "prompt name") -> str:
    name = (name or "").strip()
    if not _NAME.match(name) or name.isdigit():
        raise InvalidInputError(f"{what} {name!r} is not allowed: use letters, digits, '.', "
                                "'_' or '-' (not a plain number, no '@').")
    return name


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise InvalidInputError(f"Unknown prompt setting(s) {', '.join(sorted(unknown))}; a "
                                f"prompt sets {', '.join(PARAMS)}.")
    kinds = {"temperature": float, "top_p": float, "max_tokens": int, "seed": int}
    try:
        out = {k: kinds[k](v) for k, v in params.items() if v is not None}
    except (TypeError, ValueError):
        raise InvalidInputError("Prompt settings must be numbers.") from None
    if "temperature" in out and not 0.0 <= float(out["temperature"]) <= 2.0:
        raise InvalidInputError("temperature must be between 0 and 2.")
    if "top_p" in out and not 0.0 < float(out["top_p"]) <= 1.0:
        raise InvalidInputError("top_p must be above 0 and at most 1.")
    if "max_tokens" in out and int(out["max_tokens"]) < 1:
        raise InvalidInputError("max_tokens must be at least 1.")
    return out


def _digest(template: str, system_prompt: str, params: dict[str, Any],
            schema: dict[str, Any] | None, artifact_ref: str) -> str:
    body = json.dumps({"template": template, "system_prompt": system_prompt, "params": params,
                       "response_schema": schema, "artifact_ref": artifact_ref},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


_SELECT = ("SELECT v.id, p.name, v.version, v.template, v.system_prompt, v.params, "
           "v.response_schema, v.artifact_ref, v.sha256, v.note, v.created_at, v.user "
           "FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id")


def _version(row: tuple) -> PromptVersion:
    (vid, name, version, template, system, params, schema, artifact, sha, note, created,
     user) = row
    return PromptVersion(vid, name, version, template, system, json.loads(params or "{}"),
                         json.loads(schema) if schema else None, artifact, sha, note, created,
                         user)


def create_prompt(catalog: Catalog, name: str, template: str, *, system_prompt: str = "",
                  params: dict[str, Any] | None = None,
                  response_schema: dict[str, Any] | None = None, artifact_ref: str = "",
                  note: str = "", alias: str | None = None) -> PromptVersion:
    """The next version of prompt ``name`` (the prompt is made on its first version)."""
    name = check_name(name)
    if not template.strip():
        raise InvalidInputError("A prompt needs a message template (the user's message, with "
                                "{{variables}}).")
    params = check_params(dict(params or {}))
    if response_schema is not None and not isinstance(response_schema, dict):
        raise InvalidInputError("The response schema must be a JSON object (a JSON Schema).")
    sha = _digest(template, system_prompt, params, response_schema, artifact_ref)
    with catalog.transaction() as conn:
        row = conn.execute("SELECT id FROM prompts WHERE name = ?", (name,)).fetchone()
        if row is None:
            prompt_id = int(conn.execute("INSERT INTO prompts (name, created_at) VALUES (?, ?)",
                                         (name, utcnow())).lastrowid)
            last = None
        else:
            prompt_id = int(row[0])
            last = conn.execute("SELECT version, sha256 FROM prompt_versions WHERE prompt_id = ? "
                                "ORDER BY version DESC LIMIT 1", (prompt_id,)).fetchone()
        if last is not None and last[1] == sha:
            raise ConflictError(f"This is {name}@{last[0]} already (same content); nothing was "
                                "stored.")
        version = (last[0] if last else 0) + 1
        vid = int(conn.execute(
            "INSERT INTO prompt_versions (prompt_id, version, system_prompt, template, params, "
            "response_schema, artifact_ref, sha256, note, created_at, user) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (prompt_id, version, system_prompt, template, json.dumps(params),
             json.dumps(response_schema) if response_schema is not None else None,
             artifact_ref, sha, note, utcnow(), current_user())).lastrowid)
        catalog.audit("prompt-create", details={"prompt": f"{name}@{version}", "sha256": sha})
        if alias:
            set_alias(catalog, name, alias, version)
    return version_by_id(catalog, vid)


def version_by_id(catalog: Catalog, vid: int) -> PromptVersion:
    row = catalog.conn.execute(_SELECT + " WHERE v.id = ?", (vid,)).fetchone()
    if row is None:
        raise PromptNotFoundError(f"No prompt version #{vid}.")
    return _version(row)


def versions(catalog: Catalog, name: str) -> list[PromptVersion]:
    rows = catalog.conn.execute(_SELECT + " WHERE p.name = ? ORDER BY v.version", (name,))
    out = [_version(r) for r in rows.fetchall()]
    if not out:
        raise PromptNotFoundError(f"No prompt {name!r}; 'llmops prompt list' shows them, "
                                  "'llmops prompt create' makes one.")
    return out


def aliases(catalog: Catalog, name: str) -> dict[str, tuple[int, float]]:
    """``{alias: (version, weight)}``."""
    rows = catalog.conn.execute(
        "SELECT a.alias, a.version, a.weight FROM prompt_aliases a JOIN prompts p "
        "ON p.id = a.prompt_id WHERE p.name = ? ORDER BY a.alias", (name,)).fetchall()
    return {a: (int(v), float(w)) for a, v, w in rows}


def list_prompts(catalog: Catalog) -> list[dict[str, Any]]:
    rows = catalog.conn.execute(
        "SELECT p.name, MAX(v.version), COUNT(v.id), MAX(v.created_at) FROM prompts p "
        "JOIN prompt_versions v ON v.prompt_id = p.id GROUP BY p.id ORDER BY p.name").fetchall()
    return [{"name": n, "latest": latest, "versions": count, "updated_at": ts,
             "aliases": {a: v for a, (v, _) in aliases(catalog, n).items()}}
            for n, latest, count, ts in rows]


def set_alias(catalog: Catalog, name: str, alias: str, version: int,
              weight: float | None = None) -> None:
    """Point ``alias`` at ``version`` (and set its split weight, when given)."""
    alias = check_name(alias, "alias")
    if weight is not None and weight < 0:
        raise InvalidInputError("A split weight cannot be negative.")
    known = {v.version for v in versions(catalog, name)}
    if int(version) not in known:
        raise PromptNotFoundError(f"{name} has no version {version} (it has "
                                  f"{', '.join(map(str, sorted(known)))}).")
    with catalog.transaction() as conn:
        pid = conn.execute("SELECT id FROM prompts WHERE name = ?", (name,)).fetchone()[0]
        old = conn.execute("SELECT weight FROM prompt_aliases WHERE prompt_id = ? AND alias = ?",
                           (pid, alias)).fetchone()
        w = weight if weight is not None else (old[0] if old else 0.0)
        conn.execute("INSERT INTO prompt_aliases (prompt_id, alias, version, weight, updated_at) "
                     "VALUES (?,?,?,?,?) ON CONFLICT(prompt_id, alias) DO UPDATE SET "
                     "version = excluded.version, weight = excluded.weight, "
                     "updated_at = excluded.updated_at", (pid, alias, int(version), w, utcnow()))
        catalog.audit("prompt-alias", details={"prompt": name, "alias": alias,
                                               "version": int(version), "weight": w})


def _fraction(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def choose(catalog: Catalog, name: str, key: str) -> tuple[PromptVersion, str | None]:
    """The version a request for ``prompt:NAME`` gets, and the alias it came through."""
    table = aliases(catalog, name)
    weighted = [(a, v, w) for a, (v, w) in table.items() if w > 0]
    if weighted:
        point = _fraction(key) * sum(w for _, _, w in weighted)
        for alias, version, w in weighted:
            point -= w
            if point < 0:
                return resolve_prompt(catalog, f"{name}@{version}")[0], alias
        alias, version, _ = weighted[-1]
        return resolve_prompt(catalog, f"{name}@{version}")[0], alias
    if DEFAULT_ALIAS in table:
        return resolve_prompt(catalog, f"{name}@{DEFAULT_ALIAS}")
    return versions(catalog, name)[-1], None


def resolve_prompt(catalog: Catalog, spec: str, *, key: str = ""
                   ) -> tuple[PromptVersion, str | None]:
    """``NAME`` (see :func:`choose`), ``NAME@N`` or ``NAME@ALIAS`` to a version (and alias)."""
    name, _, which = spec.strip().partition("@")
    if not which:
        return choose(catalog, check_name(name), key)
    if which.isdigit():
        for v in versions(catalog, name):
            if v.version == int(which):
                return v, None
        raise PromptNotFoundError(f"{name} has no version {which}.")
    table = aliases(catalog, name)
    if which not in table:
        versions(catalog, name)  # says so if the prompt itself is unknown
        raise PromptNotFoundError(f"{name} has no alias {which!r}"
                                  + (f" (it has {', '.join(table)})" if table else "")
                                  + "; set one with 'llmops prompt alias'.")
    version = table[which][0]
    return next(v for v in versions(catalog, name) if v.version == version), which


def diff(a: PromptVersion, b: PromptVersion) -> str:
    """A unified diff of two versions' fields (empty when they are the same)."""
    def lines(v: PromptVersion) -> list[str]:
        out = [f"system_prompt: {line}" for line in v.system_prompt.splitlines()]
        out += [f"template: {line}" for line in v.template.splitlines()]
        out += [f"{k}: {v.params[k]}" for k in sorted(v.params)]
        if v.response_schema is not None:
            out.append("response_schema: " + json.dumps(v.response_schema, sort_keys=True))
        if v.artifact_ref:
            out.append(f"artifact: {v.artifact_ref}")
        return out

    return "\n".join(difflib.unified_diff(lines(a), lines(b), a.ref, b.ref, lineterm=""))


def usage_by_version(catalog: Catalog, name: str) -> dict[str, dict[str, Any]]:
    """Per version (NAME@N): requests served, mean latency, ratings up and down."""
    out: dict[str, dict[str, Any]] = {}
    like = name + "@%"
    for ref, n, lat, ok in catalog.conn.execute(
            "SELECT prompt_ref, COUNT(*), AVG(latency_ms), SUM(status = 200) FROM request_log "
            "WHERE prompt_ref LIKE ? GROUP BY prompt_ref", (like,)):
        out.setdefault(ref, {}).update(requests=n, ok=ok, mean_latency_ms=lat)
    for ref, up, down in catalog.conn.execute(
            "SELECT prompt_ref, SUM(rating > 0), SUM(rating < 0) FROM feedback "
            "WHERE prompt_ref LIKE ? GROUP BY prompt_ref", (like,)):
        out.setdefault(ref, {}).update(thumbs_up=up, thumbs_down=down)
    return out

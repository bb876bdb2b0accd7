"""A model's saved serve settings: what the Deployments page prefills and the gateway uses.

A deployment's settings (context length, threads, GPU layers, chat template …) can be kept
as one artifact's defaults (``model_serve_settings``, one row per artifact). The
Deployments page shows them when that model is chosen, instead of the suggested ones; the
gateway's pool starts that model with them when a request loads it. Where a deployment is
and what it is called (host, port, name) are the deployment's own and never saved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.serving.config import ServeOptions

PER_DEPLOYMENT = ("host", "port", "name")
MAX_SETTINGS_CHARS = 16_000  # a row holds a handful of options; anything longer is not ours


def savable_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(ServeOptions) if f.name not in PER_DEPLOYMENT)


def _known(values: Mapping[str, Any]) -> dict[str, Any]:
    names = savable_fields()
    return {k: v for k, v in values.items() if k in names}


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` if each has its field's type (None where the field allows it), else
    InvalidInputError: a value from outside must not reach a server's command line as
    something else."""
    from llmops_desktop.errors import InvalidInputError
    from llmops_desktop.fields import field_specs

    specs = {s.name: s for s in field_specs(ServeOptions)}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None or (value is None and spec.optional):
            continue
        want = spec.type
        ok = (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
              if want is tuple else
              isinstance(value, want) and (want is bool or not isinstance(value, bool))
              or (want is float and isinstance(value, int) and not isinstance(value, bool)))
        if not ok or (isinstance(value, str) and len(value) > 4096):
            raise InvalidInputError(f"{spec.label}: not a valid value ({str(value)[:40]!r}).")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def save_model_settings(catalog: Catalog, artifact_id: int,
                        values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep ``values`` (serve options by name; host, port and name are left out) as the
    defaults of artifact ``artifact_id``; returns what was kept. Raises InvalidInputError
    for an option the server would refuse, NotFoundError for an unknown artifact."""
    artifact = catalog.artifact(artifact_id)
    kept = _typed(_known(values))
    ServeOptions(**kept).checked()  # refuse now what the server would refuse later
    text = json.dumps(kept, sort_keys=True)
    with catalog.transaction() as conn:
        conn.execute("INSERT INTO model_serve_settings (artifact_id, settings, updated_at) "
                     "VALUES (?, ?, ?) ON CONFLICT(artifact_id) DO UPDATE SET "
                     "settings = excluded.settings, updated_at = excluded.updated_at",
                     (artifact.id, text, utcnow()))
        catalog.audit("model_settings_save", artifact_id=artifact.id,
                      details={"model": artifact.ref, "settings": kept})
    return kept


def model_settings(catalog: Catalog, artifact_id: int) -> dict[str, Any] | None:
    """The saved defaults of an artifact, or None. A row that does not read as options
    (edited by hand, or from a newer app) counts as none, with only known names kept."""
    row = catalog.conn.execute("SELECT settings FROM model_serve_settings WHERE "
                               "artifact_id = ?", (artifact_id,)).fetchone()
    if row is None or not isinstance(row[0], str) or len(row[0]) > MAX_SETTINGS_CHARS:
        return None
    try:
        values = json.loads(row[0])
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    try:
        kept = _typed(_known(values))
        ServeOptions(**kept).checked()
    except Exception:  # noqa: BLE001 - unusable: the suggested settings apply instead
        return None
    return kept


def clear_model_settings(catalog: Catalog, artifact_id: int) -> bool:
    """Forget an artifact's saved defaults; whether there were any."""
    with catalog.transaction() as conn:
        gone = conn.execute("DELETE FROM model_serve_settings WHERE artifact_id = ?",
                            (artifact_id,)).rowcount
        if gone:
            catalog.audit("model_settings_clear", artifact_id=artifact_id)
    return bool(gone)


def with_saved_settings(catalog: Catalog, artifact_id: int,
                        options: ServeOptions) -> tuple[ServeOptions, bool]:
    """``options`` with the artifact's saved defaults over them; whether any applied."""
    saved = model_settings(catalog, artifact_id)
    if not saved:
        return options, False
    return replace(options, **saved), True

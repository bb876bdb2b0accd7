"""An artifact's governance status (draft, approved, deprecated) and who changed it.

The status is a column of ``artifacts`` (``catalog/migrations/0008_artifact_status.sql``); every
change needs a comment and lands in the audit log with the user, host and time. With
the setting "serve only approved artifacts", :func:`check_servable` makes the server
refuse anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.share.errors import GovernanceError

STATUSES = ("draft", "approved", "deprecated")
DEFAULT_STATUS = "draft"


def get_status(catalog: Catalog, artifact_id: int) -> str:
    row = catalog.conn.execute("SELECT status FROM artifacts WHERE id = ?",
                               (artifact_id,)).fetchone()
    if row is None:
        catalog.artifact(artifact_id)  # raises the not-found error
    return str(row[0]) if row else DEFAULT_STATUS


def statuses(catalog: Catalog) -> dict[int, str]:
    """Every artifact's status by id (one query, for tables)."""
    return {int(i): str(s) for i, s in catalog.conn.execute("SELECT id, status FROM artifacts")}


@dataclass(frozen=True)
class StatusChange:
    ts: str
    user: str
    host: str
    old: str
    new: str
    comment: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def set_status(catalog: Catalog, artifact_id: int, status: str, comment: str, *,
               action: str = "status") -> StatusChange:
    """Change the status; the comment is required and goes to the audit log."""
    status = status.strip().lower()
    if status not in STATUSES:
        raise GovernanceError(f"Unknown status {status!r}; one of {', '.join(STATUSES)}.")
    comment = comment.strip()
    if not comment:
        raise GovernanceError("A status change needs a comment saying why (e.g. -m \"passed "
                              "the team's evaluation\").")
    catalog.artifact(artifact_id)
    if status == "approved" and action == "status":
        _check_evaluated(catalog, artifact_id)
    with catalog.transaction() as conn:
        old = get_status(catalog, artifact_id)
        conn.execute("UPDATE artifacts SET status = ? WHERE id = ?", (status, artifact_id))
        catalog.audit(action, artifact_id=artifact_id,
                      details={"from": old, "to": status, "comment": comment})
    entry = status_history(catalog, artifact_id)[0]
    return entry


def _check_evaluated(catalog: Catalog, artifact_id: int) -> None:
    """With the setting "approval needs evaluation", refuse until a run passes."""
    from llmops_desktop.settings import load_settings

    if getattr(load_settings(catalog.home.settings_path), "approval_needs_evaluation", False):
        from llmops_desktop.evaluate.gate import check_approvable

        check_approvable(catalog, artifact_id)


def status_history(catalog: Catalog, artifact_id: int) -> list[StatusChange]:
    """Status changes, newest first."""
    out = []
    for e in catalog.audit_entries(artifact_id=artifact_id):
        if e.action in ("status", "status-from-package"):
            out.append(StatusChange(e.ts, e.user, e.host, str(e.details.get("from", "")),
                                    str(e.details.get("to", "")),
                                    str(e.details.get("comment", ""))))
    return out


def check_servable(catalog: Catalog, artifact: Artifact) -> None:
    """Refuse to serve an artifact that is not approved, when Settings ask for that."""
    from llmops_desktop.settings import load_settings

    settings = load_settings(catalog.home.settings_path)
    if not getattr(settings, "serve_only_approved", False):
        return
    status = get_status(catalog, artifact.id)
    if status != "approved":
        raise GovernanceError(
            f"{artifact.ref} is {status}, and this workstation serves only approved artifacts "
            "(setting 'Serve only approved artifacts'). Approve it first with 'llmops status "
            f"{artifact.ref} approved -m \"why\"' (or in the model's details), or turn the "
            "setting off.")

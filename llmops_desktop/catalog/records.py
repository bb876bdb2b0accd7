"""Plain, frozen records the catalog hands out. No Qt, no database handles."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class ArtifactState(str, Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


def _loads(text: str | None) -> Any:
    if not text:
        return {}
    return json.loads(text)


@dataclass(frozen=True)
class Model:
    id: int
    name: str
    description: str
    license: str
    created_at: str


@dataclass(frozen=True)
class ArtifactFile:
    relpath: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Artifact:
    id: int
    model_id: int
    model_name: str
    version: int
    kind: str
    state: ArtifactState
    storage: str
    path: Path
    size_bytes: int
    parent_id: int | None
    job_id: int | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    source: str
    created_at: str
    content_digest: str
    description: str = ""
    license: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def display_name(self) -> str:
        return f"{self.model_name} v{self.version}"

    @property
    def ref(self) -> str:
        """The name the CLI accepts for exactly this artifact."""
        return f"{self.model_name}@{self.version}"

    @classmethod
    def from_row(cls, row: dict[str, Any], tags: tuple[str, ...] = ()) -> Artifact:
        return cls(
            id=row["id"], model_id=row["model_id"], model_name=row["model_name"],
            version=row["version"], kind=row["kind"], state=ArtifactState(row["state"]),
            storage=row["storage"], path=Path(row["path"]), size_bytes=row["size_bytes"],
            parent_id=row["parent_id"], job_id=row["job_id"], params=_loads(row["params"]),
            metadata=_loads(row["metadata"]), source=row["source"],
            created_at=row["created_at"], content_digest=row["content_digest"],
            description=row.get("description") or "", license=row.get("license") or "",
            tags=tags,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model_name, "version": self.version, "ref": self.ref,
            "kind": self.kind, "state": self.state.value, "storage": self.storage,
            "path": str(self.path), "size_bytes": self.size_bytes, "parent_id": self.parent_id,
            "job_id": self.job_id, "params": self.params, "metadata": self.metadata,
            "source": self.source, "created_at": self.created_at,
            "content_digest": self.content_digest, "description": self.description,
            "license": self.license, "tags": list(self.tags),
        }


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict[str, Any]
    state: JobState
    pid: int | None
    pid_started: float | None
    log_path: Path | None
    progress: float | None
    message: str
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=row["id"], kind=row["kind"], params=_loads(row["params"]),
            state=JobState(row["state"]), pid=row["pid"], pid_started=row.get("pid_started"),
            log_path=Path(row["log_path"]) if row["log_path"] else None,
            progress=row["progress"], message=row["message"] or "",
            result=_loads(row["result"]) if row["result"] else None, error=row["error"],
            created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "params": self.params, "state": self.state.value,
            "pid": self.pid, "log_path": str(self.log_path) if self.log_path else None,
            "progress": self.progress, "message": self.message, "result": self.result,
            "error": self.error, "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: str
    user: str
    host: str
    action: str
    artifact_id: int | None
    job_id: int | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Evaluation:
    """One measured figure of an artifact, e.g. perplexity on a held-out text."""

    id: int
    artifact_id: int
    metric: str
    value: float
    dataset: str
    dataset_sha256: str
    params: dict[str, Any]
    job_id: int | None
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "dataset": self.dataset,
                "dataset_sha256": self.dataset_sha256, "params": self.params,
                "job_id": self.job_id, "created_at": self.created_at}

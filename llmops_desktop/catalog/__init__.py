"""The SQLite catalog and the records it hands out."""

from llmops_desktop.catalog.catalog import Catalog, utcnow
from llmops_desktop.catalog.records import (
    Artifact,
    ArtifactFile,
    ArtifactState,
    AuditEntry,
    Evaluation,
    Job,
    JobState,
    Model,
)

__all__ = ["Artifact", "ArtifactFile", "ArtifactState", "AuditEntry", "Catalog", "Evaluation", "Job",
           "JobState", "Model", "utcnow"]

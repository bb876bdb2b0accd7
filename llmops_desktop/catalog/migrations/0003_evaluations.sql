-- Evaluation results (perplexity and the like), kept apart from the immutable artifact.
-- Released: never change this file; add a new step instead.

CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    dataset TEXT NOT NULL DEFAULT '',
    dataset_sha256 TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    job_id INTEGER REFERENCES jobs(id),
    created_at TEXT NOT NULL
);

CREATE INDEX evaluations_artifact ON evaluations(artifact_id);

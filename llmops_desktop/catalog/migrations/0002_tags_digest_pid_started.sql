-- Tags, a content digest for duplicate detection, and the job's child start time
-- (so a recycled pid is never mistaken for our job). 0002_tags_digest_pid_started.py fills
-- the digest of artifacts made before this step.
-- Released: never change this file; add a new step instead.

CREATE TABLE tags (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (artifact_id, tag)
);

ALTER TABLE artifacts ADD COLUMN content_digest TEXT NOT NULL DEFAULT '';

ALTER TABLE jobs ADD COLUMN pid_started REAL;

CREATE INDEX artifacts_digest ON artifacts(content_digest);

CREATE INDEX audit_artifact ON audit_log(artifact_id);

-- Ratings of generated replies, the playground's thumbs up/down (serving/feedback.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    reply_id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    deployment_id INTEGER REFERENCES deployments(id) ON DELETE SET NULL,
    artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
    artifact_ref TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT '',
    messages TEXT NOT NULL DEFAULT '[]',
    prompt TEXT NOT NULL DEFAULT '',
    reply TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    ttft_ms REAL,
    tokens_per_s REAL,
    comment TEXT NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS feedback_artifact ON feedback(artifact_id);

-- Deployments (one server process each) and their request log (queried by serving/store.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
    artifact_ref TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER,
    url TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'starting'
        CHECK (state IN ('starting','running','stopped','failed')),
    pid INTEGER,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    stopped_at TEXT
);

CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
    ts TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    stream INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,
    error TEXT,
    finish_reason TEXT,
    queue_ms REAL,
    ttft_ms REAL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    tokens_per_s REAL
);

CREATE INDEX IF NOT EXISTS request_log_deployment ON request_log(deployment_id, ts);

CREATE INDEX IF NOT EXISTS request_log_artifact ON request_log(artifact_id);

CREATE INDEX IF NOT EXISTS deployments_artifact ON deployments(artifact_id);

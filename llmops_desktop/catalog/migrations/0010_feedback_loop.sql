-- The loop (issue #19): versioned prompts, request rows findable by the id a client got,
-- and ratings linked to their request row, prompt version and correction
-- (prompts/store.py, serving/feedback.py, serving/store.py).
-- Released: never change this file; add a new step instead.

ALTER TABLE request_log ADD COLUMN response_id TEXT;

ALTER TABLE request_log ADD COLUMN prompt_ref TEXT;

CREATE INDEX IF NOT EXISTS request_log_response ON request_log(response_id);

ALTER TABLE feedback ADD COLUMN request_id INTEGER;

ALTER TABLE feedback ADD COLUMN prompt_ref TEXT NOT NULL DEFAULT '';

ALTER TABLE feedback ADD COLUMN correction TEXT NOT NULL DEFAULT '';

ALTER TABLE feedback ADD COLUMN source TEXT NOT NULL DEFAULT 'playground';

CREATE INDEX IF NOT EXISTS feedback_prompt ON feedback(prompt_ref);

CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS prompt_versions (
    id INTEGER PRIMARY KEY,
    prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    system_prompt TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    response_schema TEXT,
    artifact_ref TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    UNIQUE (prompt_id, version)
);

CREATE TABLE IF NOT EXISTS prompt_aliases (
    prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    weight REAL NOT NULL DEFAULT 1.0,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (prompt_id, alias)
);

-- Evaluation suites (hashed, versioned items), runs over artifacts and every item's result
-- (evaluate/suites.py, evaluate/runs.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS eval_suites (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS eval_suite_versions (
    id INTEGER PRIMARY KEY,
    suite_id INTEGER NOT NULL REFERENCES eval_suites(id),
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL,
    layout TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source_sha256 TEXT NOT NULL DEFAULT '',
    items INTEGER NOT NULL,
    kinds TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (suite_id, version)
);

CREATE TABLE IF NOT EXISTS eval_runs (
    id INTEGER PRIMARY KEY,
    suite_version_id INTEGER NOT NULL REFERENCES eval_suite_versions(id),
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    job_id INTEGER REFERENCES jobs(id),
    state TEXT NOT NULL DEFAULT 'running',
    params_key TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    items_total INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX IF NOT EXISTS eval_runs_artifact ON eval_runs(artifact_id);

CREATE TABLE IF NOT EXISTS eval_results (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
    item_index INTEGER NOT NULL,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
    scores TEXT NOT NULL DEFAULT '{}',
    details TEXT NOT NULL DEFAULT '{}',
    seconds REAL NOT NULL DEFAULT 0,
    UNIQUE (run_id, item_index)
);

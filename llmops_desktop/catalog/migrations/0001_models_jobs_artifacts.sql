-- Models, their artifacts and files, jobs and the audit log.
-- Released: never change this file; add a new step instead.

CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    license TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued','running','succeeded','failed','cancelled','interrupted')),
    pid INTEGER,
    log_path TEXT,
    progress REAL,
    message TEXT NOT NULL DEFAULT '',
    result TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);

CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id),
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending','ready','failed')),
    storage TEXT NOT NULL CHECK (storage IN ('copy','hardlink','reference')),
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    parent_id INTEGER REFERENCES artifacts(id),
    job_id INTEGER REFERENCES jobs(id),
    params TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    UNIQUE (model_id, version)
);

CREATE TABLE artifact_files (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (artifact_id, relpath)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    action TEXT NOT NULL,
    artifact_id INTEGER,
    job_id INTEGER,
    details TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX artifacts_parent ON artifacts(parent_id);

CREATE INDEX jobs_state ON jobs(state);

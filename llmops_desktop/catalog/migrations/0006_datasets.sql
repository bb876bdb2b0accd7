-- Datasets for fine-tuning and their hashed versions (datasets/store.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS dataset_versions (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source_sha256 TEXT NOT NULL DEFAULT '',
    rows INTEGER NOT NULL,
    shape TEXT NOT NULL,
    mapping TEXT NOT NULL DEFAULT '{}',
    split TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (dataset_id, version)
);

CREATE INDEX IF NOT EXISTS dataset_versions_sha ON dataset_versions(sha256);

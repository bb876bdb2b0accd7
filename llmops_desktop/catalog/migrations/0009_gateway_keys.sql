-- The gateway's API keys (salted hashes only) and its request log (gateway/keys.py, usage.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL UNIQUE,
    salt BLOB NOT NULL,
    key_hash BLOB NOT NULL,
    models TEXT NOT NULL DEFAULT '*',
    rpm INTEGER,
    tpm INTEGER,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    last_used_at TEXT
);

CREATE TABLE IF NOT EXISTS gateway_requests (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    key_name TEXT,
    model TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL,
    stream INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,
    error TEXT,
    ttft_ms REAL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS gateway_requests_key ON gateway_requests(key_name, ts);

-- Monitor history: downsampled GPU, system and deployment series (monitor/history.py).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS monitor_series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS monitor_history (
    series_id INTEGER NOT NULL REFERENCES monitor_series(id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    mean REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

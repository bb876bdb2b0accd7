-- Governance status of artifacts: draft, approved, deprecated (share/governance.py).
-- Released: never change this file; add a new step instead.

ALTER TABLE artifacts ADD COLUMN status TEXT NOT NULL DEFAULT 'draft'
    CHECK (status IN ('draft','approved','deprecated'));

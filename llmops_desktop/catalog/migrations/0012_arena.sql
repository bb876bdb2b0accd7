-- The blind arena (issue #18): two replies to the same prompt, shown unlabelled in random
-- order, and which one the person preferred (evaluate/arena.py). Side a and side b are the
-- two contestants as chosen; shown_left says which of them was shown as "A" (left); winner
-- is a, b or tie. Each side keeps its artifact (as id and ref, the ref surviving the
-- artifact's removal), its deployment, the model name asked and the response id the server
-- gave (its request_log row).
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS arena_battles (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT '',
    messages TEXT NOT NULL DEFAULT '[]',
    prompt TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    artifact_a INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
    artifact_ref_a TEXT NOT NULL DEFAULT '',
    deployment_a INTEGER REFERENCES deployments(id) ON DELETE SET NULL,
    model_a TEXT NOT NULL DEFAULT '',
    response_a TEXT NOT NULL DEFAULT '',
    reply_a TEXT NOT NULL,
    artifact_b INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
    artifact_ref_b TEXT NOT NULL DEFAULT '',
    deployment_b INTEGER REFERENCES deployments(id) ON DELETE SET NULL,
    model_b TEXT NOT NULL DEFAULT '',
    response_b TEXT NOT NULL DEFAULT '',
    reply_b TEXT NOT NULL,
    shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    comment TEXT NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS arena_battles_artifact_a ON arena_battles(artifact_a);

CREATE INDEX IF NOT EXISTS arena_battles_artifact_b ON arena_battles(artifact_b);

CREATE INDEX IF NOT EXISTS arena_battles_created ON arena_battles(created_at);

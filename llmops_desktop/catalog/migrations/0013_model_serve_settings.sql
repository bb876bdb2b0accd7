-- A model's saved serve settings (serving/model_settings.py): the Deployments page prefills
-- them and the gateway starts that model with them.
-- Released: never change this file; add a new step instead.

CREATE TABLE IF NOT EXISTS model_serve_settings (
    artifact_id INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
    settings TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL
);

"""``llmops doctor --bundle``: a zip a user can send for support, with no secret in it."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from llmops_desktop.secrets import set_secret

HF_TOKEN = "hf_PlantedHubToken1234567890abcdef"
MIRROR_TOKEN = "mirror-Planted-Token-zq81k2"
API_KEY = "Xk3pPlantedApiKeyQ7w"  # no telltale prefix: only its names give it away
SETTINGS_KEY = "Settings-Planted-Secret-77ab"


def test_bundle_has_versions_settings_jobs_and_schema_but_no_secret(home, catalog, tmp_path):
    set_secret(home, "hf_token", HF_TOKEN)
    set_secret(home, "mirror_token", MIRROR_TOKEN)
    settings = json.loads(home.settings_path.read_text()) if home.settings_path.exists() else {}
    settings.update({"hub_endpoint": "https://hub.example.org", "gateway_api_key": SETTINGS_KEY})
    home.settings_path.write_text(json.dumps(settings))
    job = catalog.create_job("deploy", {"artifact_id": 1, "api_key": API_KEY, "port": 8123})
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.log_path.write_text(
        "starting the server on port 8123\n"
        f"env: LLMOPS_API_KEY={API_KEY} HF_TOKEN={HF_TOKEN}\n"
        f"client sent Authorization: Bearer {API_KEY}\n"
        f"the key was {API_KEY}, the mirror said {MIRROR_TOKEN}\n")

    dest = tmp_path / "out" / "diag.zip"
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           "doctor", "--bundle", str(dest)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    assert f"written to {dest}" in proc.stderr

    with zipfile.ZipFile(dest) as zf:
        members = {name: zf.read(name).decode("utf-8") for name in zf.namelist()}
    assert {"doctor.json", "settings.json", "catalog.json", "jobs.json",
            "secrets.json"} <= set(members)
    assert f"logs/job-{job.id}-deploy.log" in members
    # What helps support is there …
    doctor = json.loads(members["doctor.json"])
    assert doctor["app_version"] and doctor["python"]["version"]
    schema = json.loads(members["catalog.json"])
    assert schema["schema"] == schema["app_schema"] and "jobs" in schema["tables"]
    assert json.loads(members["settings.json"])["hub_endpoint"] == "https://hub.example.org"
    jobs = json.loads(members["jobs.json"])
    assert jobs[0]["params"]["port"] == 8123
    assert "starting the server on port 8123" in members[f"logs/job-{job.id}-deploy.log"]
    assert json.loads(members["secrets.json"]) == {"hf_token": True, "mirror_token": True}
    # … and no secret, in any member.
    for name, text in members.items():
        for secret in (HF_TOKEN, MIRROR_TOKEN, API_KEY, SETTINGS_KEY):
            assert secret not in text, f"{secret} leaked into {name}"
    assert not Path(str(dest) + ".part").exists()

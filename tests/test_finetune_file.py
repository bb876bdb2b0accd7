"""``llmops finetune BASE FILE.jsonl``: a data file is imported as a dataset version first,
with its bad rows reported, as people coming from LLaMA-Factory expect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llmops_desktop.datasets.store import list_datasets
from tests.mirror_fixtures import import_artifact


def llmops(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300)


def _chat(i: int) -> str:
    return json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"},
                                    {"role": "assistant", "content": f"Answer {i}."}]})


def test_finetune_takes_a_file_and_reports_its_bad_rows(home, catalog, demo_model_dir,
                                                        tmp_path: Path) -> None:
    base = import_artifact(catalog, demo_model_dir, "tiny-base")
    data = tmp_path / "support-chats.jsonl"
    lines = [_chat(i) for i in range(12)]
    lines.insert(2, '{"messages": "not a list"')  # line 3: broken JSON
    data.write_text("\n".join(lines) + "\n")

    refused = llmops(home, "finetune", base.ref, str(data), "--estimate")
    assert refused.returncode != 0
    assert "support-chats.jsonl has 1 bad row(s); nothing was imported" in refused.stderr
    assert "line 3:" in refused.stderr and "--keep-good-rows" in refused.stderr
    assert list_datasets(catalog) == []

    ran = llmops(home, "finetune", base.ref, str(data), "--keep-good-rows", "--estimate",
                 "--json")
    assert ran.returncode == 0, ran.stderr
    assert "imported support-chats.jsonl as dataset support-chats" in ran.stderr
    assert "1 bad row(s) left out" in ran.stderr and "line 3:" in ran.stderr
    assert "options" in json.loads(ran.stdout)  # the estimate, for the imported version
    (dataset,) = list_datasets(catalog)
    (version,) = dataset.versions
    assert version.rows == 12 and version.shape == "chat"

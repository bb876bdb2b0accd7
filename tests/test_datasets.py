"""Datasets: import of JSONL, JSON, CSV and Parquet; shapes; bad rows by line; stats; split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.store import (
    BadRowsError,
    import_dataset,
    list_datasets,
    read_rows,
    resolve_version,
    set_split,
    split_indices,
)
from llmops_desktop.errors import ConflictError, InvalidInputError
from llmops_desktop.paths import Home


def llmops(home: Home, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_each_shape_is_recognised_in_each_format(catalog: Catalog, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chat = _jsonl(tmp_path / "chat.jsonl", [CHAT, {"messages": [
        {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "add", "input": "1 2", "output": "3"},
                                  {"instruction": "greet", "output": "hi"}], indent=2))
    pc = tmp_path / "pc.csv"
    pc.write_text('prompt,completion\n"Say, hi",hi\nSay bye,bye\n', encoding="utf-8")
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"text": ["one document", "another one"]}), text)
    got = {p.suffix: import_dataset(catalog, p) for p in (chat, alpaca, pc, text)}
    assert {k: v.shape for k, v in got.items()} == {
        ".jsonl": "chat", ".json": "instruction", ".csv": "prompt_completion",
        ".parquet": "text"}
    # ShareGPT rows become role/content; the CSV keeps the comma inside quotes.
    assert read_rows(got[".jsonl"])[0] == CHAT
    assert read_rows(got[".jsonl"], 1, 1)[0]["messages"][1] == {"role": "assistant", "content": "a"}
    assert read_rows(got[".csv"])[0] == {"prompt": "Say, hi", "completion": "hi"}
    assert read_rows(got[".json"])[1] == {"instruction": "greet", "output": "hi", "input": ""}
    for v in got.values():
        assert v.rows == 2 and len(v.sha256) == 64 and v.data_path.is_file()
        assert v.path.parent == catalog.home.datasets_dir


def test_columns_named_otherwise_need_a_mapping(catalog: Catalog, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "qa.jsonl", [{"q": "2+2", "a": "4"}, {"q": "3+3", "a": "6"}])
    with pytest.raises(InvalidInputError, match=r"Cannot tell what shape.*q, a.*--map"):
        import_dataset(catalog, src)
    with pytest.raises(InvalidInputError, match="no column 'answer'"):
        import_dataset(catalog, src, mapping=["prompt=q", "completion=answer"])
    v = import_dataset(catalog, src, mapping=["prompt=q", "completion=a"])
    assert v.shape == "prompt_completion" and v.mapping == {"prompt": "q", "completion": "a"}
    assert read_rows(v)[1] == {"prompt": "3+3", "completion": "6"}


@pytest.mark.parametrize("rows, line, reason", [
    ([CHAT, "{not json", CHAT], 2, "invalid JSON"),
    ([CHAT, CHAT, {"messages": "hello"}], 3, "not a JSON list of messages"),
    ([CHAT, {"messages": [{"role": "user", "content": "only a question"}]}], 2,
     "no assistant message"),
    ([CHAT, {"messages": [{"role": "wizard", "content": "x"}]}], 2, "role 'wizard'"),
    ([CHAT, {"messages": [{"role": "user", "content": 5}, {"role": "assistant",
                                                            "content": "x"}]}], 2,
     "content that is not text"),
    ([CHAT, {"text": "x"}], 2, "no 'messages' field"),
    ([CHAT, [1, 2]], 2, "must be an object"),
])
def test_bad_chat_rows_are_reported_by_line(catalog: Catalog, tmp_path: Path, rows, line,
                                            reason) -> None:
    src = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadRowsError, match=f"line {line}: .*{reason}") as err:
        import_dataset(catalog, src)
    assert [b.line for b in err.value.bad_rows] == [line]
    assert list_datasets(catalog) == []  # refused: nothing imported
    assert not any(p.name != ".staging" for p in catalog.home.datasets_dir.iterdir())


def test_bad_rows_of_other_shapes_and_formats(catalog: Catalog, tmp_path: Path) -> None:
    csv = tmp_path / "pc.csv"
    csv.write_text('prompt,completion\na,b\n"multi\nline",c\nonly-one-field\nx,y\n')
    with pytest.raises(BadRowsError, match="line 5: 1 fields where the header has 2"):
        import_dataset(catalog, csv)
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"},\n'
                      '  {"instruction": ["x"], "output": "d"}\n]')
    with pytest.raises(BadRowsError) as err:
        import_dataset(catalog, alpaca)
    assert [(b.line, b.reason) for b in err.value.bad_rows] == [
        (3, "no 'output' field"), (4, "'instruction' must be text, not list")]


def test_keep_good_rows_records_the_bad_ones(catalog: Catalog, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "mixed.jsonl", [CHAT, "oops", "", CHAT,
                                            {"messages": [{"role": "user", "content": "q"}]}])
    v = import_dataset(catalog, src, keep_good_rows=True)
    assert v.rows == 2
    assert [(b.line, b.reason.split(" (")[0]) for b in v.bad_rows] == [
        (2, "invalid JSON"), (5, "no assistant message: nothing to learn from")]
    assert v.metadata["blank_lines"] == 1 and v.metadata["duplicates"] == 1


def test_versions_hashes_duplicates_and_split(catalog: Catalog, tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(50)]
    src = _jsonl(tmp_path / "data.jsonl", rows)
    v1 = import_dataset(catalog, src, name="qa", validation=0.2, seed=7)
    with pytest.raises(ConflictError, match="already qa@1"):
        import_dataset(catalog, src, name="qa")
    _jsonl(src, rows + [{"prompt": "new", "completion": "row"}])
    v2 = import_dataset(catalog, src, name="qa")
    assert (v1.version, v2.version) == (1, 2) and v1.sha256 != v2.sha256
    assert resolve_version(catalog, "qa").id == v2.id
    assert resolve_version(catalog, "qa@1").id == v1.id
    # The split: 10 of 50 rows, the same for the same seed, another for another seed.
    val = v1.split["validation_indices"]
    assert len(val) == 10 and v1.split["train_rows"] == 40
    assert val == split_indices(50, 0.2, 7) != split_indices(50, 0.2, 8)
    again = set_split(catalog, "qa@1", 0.3, seed=1)
    assert again.split["validation_rows"] == 15 and again.sha256 == v1.sha256
    assert again.split["validation_indices"] == split_indices(50, 0.3, 1)


def test_stats_with_the_demo_tokenizer(catalog: Catalog, tmp_path: Path,
                                       demo_model_session: Path) -> None:
    from llmops_desktop.datasets.stats import dataset_stats, load_tokenizer

    rows = [CHAT, CHAT, {"messages": [{"role": "user", "content": " "},
                                      {"role": "assistant", "content": ""}]},
            {"messages": [{"role": "user", "content": "word " * 60},
                          {"role": "assistant", "content": "ok"}]}]
    v = import_dataset(catalog, _jsonl(tmp_path / "c.jsonl", rows))
    tok = load_tokenizer(demo_model_session)
    stats = dataset_stats(v, tokenizer=tok, max_len=32, bins=5)
    assert stats["rows"] == 4 and stats["duplicates"] == 1 and stats["empty_rows"] == 1
    assert stats["duplicate_rows"] == [1] and stats["empty_row_indices"] == [2]
    assert sum(stats["histogram"]["counts"]) == 4 and len(stats["histogram"]["edges"]) == 6
    assert stats["tokens"]["max"] > 60 and stats["rows_over_max_len"] == 1
    # Only the assistant's reply is trained: fewer tokens than the whole row.
    assert stats["trained_tokens"]["max"] < stats["tokens"]["max"]


def test_cli_import_list_show_stats_split(home: Home, tmp_path: Path,
                                          demo_model_session: Path) -> None:
    src = _jsonl(tmp_path / "chat.jsonl", [CHAT, "{broken", CHAT])
    bad = llmops(home, "dataset", "import", str(src), "--json", ok=False)
    assert bad.returncode == 5
    assert json.loads(bad.stdout)["bad_rows"] == [
        {"line": 2, "reason": "invalid JSON (Expecting property name enclosed in double quotes)"}]
    out = json.loads(llmops(home, "dataset", "import", str(src), "--keep-good-rows",
                            "--name", "greet", "--json").stdout)
    assert out["ref"] == "greet@1" and out["rows"] == 2 and out["shape"] == "chat"
    listed = llmops(home, "dataset", "list").stdout
    assert "greet@1" in listed and "chat" in listed
    shown = llmops(home, "dataset", "show", "greet", "--rows", "1").stdout
    assert "line 2: invalid JSON" in shown and "hello" in shown
    llmops(home, "import", str(demo_model_session), "--name", "tiny")
    stats = json.loads(llmops(home, "dataset", "stats", "greet", "--model", "tiny",
                              "--json").stdout)
    assert stats["duplicates"] == 1 and stats["tokens"]["min"] > 0
    split = json.loads(llmops(home, "dataset", "split", "greet", "--validation", "0.5",
                              "--json").stdout)
    assert split["split"]["validation_rows"] == 1
    missing = llmops(home, "dataset", "show", "nope", ok=False)
    assert missing.returncode == 3 and "llmops dataset list" in missing.stderr

"""Readers for JSONL, JSON, CSV and Parquet files: rows with the line they came from.

Each reader yields :class:`RawRow` objects. A row that cannot be parsed is yielded too,
with the reason, so the importer can report it with its line number instead of dropping
it. Line numbers are 1-based lines of the file (for a JSON array: the line where the
element starts; for CSV: the line where the record starts, the header being line 1);
Parquet has no lines, so its rows are numbered from 1.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError

FORMATS = ("jsonl", "json", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
             ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class RawRow:
    line: int
    data: Any = None
    error: str | None = None
    blank: bool = False


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InvalidInputError(f"Unknown dataset format {fmt!r}; one of {', '.join(FORMATS)}.")
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InvalidInputError(
            f"{path.name}: cannot tell the format from its extension. Use a .jsonl, .json, "
            ".csv or .parquet file, or say which with --format.")
    if found == "json":  # a .json file holding one object per line is JSON lines
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip()
        if head[:1] == b"{":
            first = head.split(b"\n", 1)[0].strip()
            try:
                json.loads(first)
                return "jsonl"
            except ValueError:
                return "json"
    return found


def read_rows(path: Path, fmt: str) -> Iterator[RawRow]:
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file.")
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "json":
        yield from _read_json(path)
    elif fmt == "csv":
        yield from _read_csv(path)
    elif fmt == "parquet":
        yield from _read_parquet(path)
    else:
        raise InvalidInputError(f"Unknown dataset format {fmt!r}.")


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRow(n, error=f"not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            if n == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                yield RawRow(n, blank=True)
                continue
            try:
                yield RawRow(n, json.loads(text))
            except ValueError as exc:
                yield RawRow(n, error=f"invalid JSON ({_json_reason(exc)})")


def _json_reason(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def _read_json(path: Path) -> Iterator[RawRow]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path.name} is not UTF-8 text ({exc.reason}).") from None
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text):
        return
    if text[i] == "{":  # {"data": [...]} or {"train": [...]}: take the one list inside
        try:
            obj, _ = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path.name} is not valid JSON: {exc.msg} at line "
                                    f"{exc.lineno}, column {exc.colno}.") from None
        lists = [k for k, v in obj.items() if isinstance(v, list)] if isinstance(obj, dict) else []
        if len(lists) != 1:
            raise InvalidInputError(
                f"{path.name} holds one JSON object, not a list of rows. Give a JSON array of "
                "objects, or JSON lines (one object per line).")
        key = lists[0]
        # Find the list's own position to number its elements by line.
        start = text.find("[", text.find(json.dumps(key)))
        yield from _array_items(text, start, dec, path)
        return
    if text[i] != "[":
        raise InvalidInputError(f"{path.name} must hold a JSON array of rows (it starts with "
                                f"{text[i]!r}).")
    yield from _array_items(text, i, dec, path)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _array_items(text: str, start: int, dec: json.JSONDecoder, path: Path) -> Iterator[RawRow]:
    i = _skip_ws(text, start + 1)
    line = text.count("\n", 0, i) + 1
    pos = i
    if i < len(text) and text[i] == "]":
        return
    while i < len(text):
        line += text.count("\n", pos, i)
        pos = i
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{path.name} is not valid JSON at line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}. Rows before it cannot be trusted either; fix the file (or "
                "export it as JSON lines, where one bad line does not spoil the rest).") from None
        yield RawRow(line, obj)
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        elif i < len(text) and text[i] == "]":
            return
        else:
            bad = text.count("\n", 0, i) + 1
            raise InvalidInputError(f"{path.name}: expected ',' or ']' at line {bad}.")


def _read_csv(path: Path) -> Iterator[RawRow]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else None
    with open(path, encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(65536)
        fh.seek(0)
        if delimiter is None:
            try:
                delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInputError(f"{path.name}: the header line cannot be read ({exc}).") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise InvalidInputError(f"{path.name}: the header names a column twice: {header}.")
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RawRow(start, error=f"malformed CSV ({exc})")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                yield RawRow(line, blank=True)
            elif len(row) != len(header):
                yield RawRow(line, error=f"{len(row)} fields where the header has {len(header)}")
            else:
                yield RawRow(line, dict(zip(header, row)))


def _read_parquet(path: Path) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("Reading Parquet needs pyarrow: pip install pyarrow.") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types
        raise InvalidInputError(f"{path.name} is not a readable Parquet file ({exc}).") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            n += 1
            yield RawRow(n, record)

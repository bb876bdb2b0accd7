"""Dataset versions in the catalog and on disk.

A version is imported once and never changes: its rows are written in canonical form to
``datasets/<name>-v<N>-<sha12>/data.jsonl`` (hashed while written), next to a copy of the
original file. Only its train/validation split may be set again; the split is a function
of (rows, fraction, seed) and is stored with the version so a fine-tune names exactly the
rows it held out.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.datasets.formats import detect_format
from llmops_desktop.datasets.formats import read_rows as read_source_rows
from llmops_desktop.datasets.shapes import (
    BadRow,
    RowError,
    detect_shape,
    is_empty,
    normalize_row,
    parse_mapping,
)
from llmops_desktop.errors import (
    CancelledError,
    ConflictError,
    EmptySourceError,
    InvalidInputError,
    NotFoundError,
)
from llmops_desktop.hashing import sha256_file
from llmops_desktop.safepath import safe_join

DATA_FILE = "data.jsonl"
DETECT_ROWS = 200  # rows whose columns decide the shape
SHOWN_BAD_ROWS = 20  # bad rows listed in an error message (all are kept in the metadata)


class BadRowsError(InvalidInputError):
    """Some rows do not fit; nothing was imported. ``bad_rows`` lists them all."""

    def __init__(self, message: str, bad_rows: list[BadRow]) -> None:
        super().__init__(message)
        self.bad_rows = bad_rows


class DatasetNotFoundError(NotFoundError):
    pass


@dataclass(frozen=True)
class DatasetVersion:
    id: int
    dataset_id: int
    name: str
    version: int
    path: Path
    source: str
    format: str
    sha256: str
    source_sha256: str
    rows: int
    shape: str
    mapping: dict[str, str]
    split: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    @property
    def bad_rows(self) -> list[BadRow]:
        return [BadRow(b["line"], b["reason"]) for b in self.metadata.get("bad_rows", [])]

    def to_json(self, *, with_indices: bool = False) -> dict[str, Any]:
        split = dict(self.split)
        if not with_indices:
            split.pop("validation_indices", None)
        return {"id": self.id, "name": self.name, "version": self.version, "ref": self.ref,
                "path": str(self.path), "source": self.source, "format": self.format,
                "sha256": self.sha256, "source_sha256": self.source_sha256, "rows": self.rows,
                "shape": self.shape, "mapping": self.mapping, "split": split,
                "metadata": self.metadata, "created_at": self.created_at}

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> DatasetVersion:
        return cls(id=r["id"], dataset_id=r["dataset_id"], name=r["name"], version=r["version"],
                   path=Path(r["path"]), source=r["source"], format=r["format"],
                   sha256=r["sha256"], source_sha256=r["source_sha256"], rows=r["rows"],
                   shape=r["shape"], mapping=json.loads(r["mapping"] or "{}"),
                   split=json.loads(r["split"] or "{}"),
                   metadata=json.loads(r["metadata"] or "{}"), created_at=r["created_at"])


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    description: str
    created_at: str
    versions: tuple[DatasetVersion, ...] = field(default=())

    @property
    def latest(self) -> DatasetVersion | None:
        return self.versions[-1] if self.versions else None


_SELECT = """SELECT v.*, d.name AS name FROM dataset_versions v
             JOIN datasets d ON d.id = v.dataset_id"""




def list_datasets(catalog: Catalog) -> list[Dataset]:
    versions: dict[int, list[DatasetVersion]] = {}
    for r in catalog.rows(_SELECT + " ORDER BY v.dataset_id, v.version"):
        versions.setdefault(r["dataset_id"], []).append(DatasetVersion.from_row(r))
    return [Dataset(id=r["id"], name=r["name"], description=r["description"],
                    created_at=r["created_at"], versions=tuple(versions.get(r["id"], ())))
            for r in catalog.rows("SELECT * FROM datasets ORDER BY name")]


def resolve_version(catalog: Catalog, ref: str | int) -> DatasetVersion:
    """A version by ``name`` (the latest), ``name@N`` or its numeric id."""
    return DatasetVersion.from_row(find_version_row(
        catalog, _SELECT, "d.name", ref, lambda text: DatasetNotFoundError(
            f"No dataset {text!r}. 'llmops dataset list' shows the datasets you have; "
            "'llmops dataset import FILE' adds one.")))


def find_version_row(catalog: Catalog, select: str, name_column: str, ref: str | int,
                     not_found: Callable[[str], Exception]) -> dict[str, Any]:
    """The row of a version by ``name`` (the latest), ``name@N`` or its numeric id, from
    ``select`` (the versions as ``v``, joined to what names them, whose name is
    ``name_column``: our own SQL, never outside text); raises ``not_found(ref as text)``
    if there is none. Shared by datasets and evaluation suites, versioned alike."""
    text = str(ref).strip()
    if text.isdigit():
        rows = catalog.rows(select + " WHERE v.id = ?", (int(text),))
    else:
        name, _, version = text.partition("@")
        if version and not version.isdigit():
            raise InvalidInputError(f"{text!r}: the part after '@' must be a version number.")
        rows = (catalog.rows(select + f" WHERE {name_column} = ? AND v.version = ?",
                             (name, int(version)))
                if version else
                catalog.rows(select + f" WHERE {name_column} = ? ORDER BY v.version DESC "
                             "LIMIT 1", (name,)))
    if not rows:
        raise not_found(text)
    return rows[0]


def read_rows(version: DatasetVersion, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """Canonical rows ``offset`` .. ``offset + limit`` of a version."""
    out: list[dict[str, Any]] = []
    for i, row in enumerate(iter_rows(version)):
        if i < offset:
            continue
        if limit is not None and len(out) >= limit:
            break
        out.append(row)
    return out


def iter_rows(version: DatasetVersion) -> Iterator[dict[str, Any]]:
    yield from iter_canonical(version.data_path, f"The rows of {version.ref} are missing "
                              f"({version.data_path}). Import the dataset again.")


def iter_canonical(path: Path, missing: str) -> Iterator[dict[str, Any]]:
    """The objects of a canonical JSONL file an import wrote (one per line); raises
    InvalidInputError(``missing``) if the file is gone."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)
    except FileNotFoundError:
        raise InvalidInputError(missing) from None


def verify(version: DatasetVersion) -> None:
    """Raise if the stored rows are not what was imported (sha256)."""
    try:
        digest = sha256_file(version.data_path)
    except FileNotFoundError:
        raise InvalidInputError(f"The rows of {version.ref} are missing ({version.data_path}); "
                                "import the dataset again.") from None
    if digest != version.sha256:
        from llmops_desktop.errors import CorruptFileError

        raise CorruptFileError(f"The rows of {version.ref} changed on disk since they were "
                               "imported (sha256 differs). Import the dataset again.")


def split_indices(rows: int, fraction: float, seed: int) -> list[int]:
    """The validation rows: the same for the same (rows, fraction, seed), sorted."""
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError("The validation fraction must be at least 0 and below 1 "
                                f"(got {fraction}).")
    if fraction == 0.0 or rows < 2:
        return []
    count = min(rows - 1, max(1, round(rows * fraction)))
    order = list(range(rows))
    random.Random(seed).shuffle(order)
    return sorted(order[:count])


def _split_record(rows: int, fraction: float, seed: int) -> dict[str, Any]:
    val = split_indices(rows, fraction, seed)
    return {"validation_fraction": fraction, "seed": seed, "validation_rows": len(val),
            "train_rows": rows - len(val), "validation_indices": val}


def set_split(catalog: Catalog, ref: str | int, fraction: float, seed: int = 0) -> DatasetVersion:
    version = resolve_version(catalog, ref)
    record = _split_record(version.rows, fraction, seed)
    with catalog.transaction() as conn:
        conn.execute("UPDATE dataset_versions SET split = ? WHERE id = ?",
                     (json.dumps(record), version.id))
        catalog.audit("dataset-split", details={"dataset": version.ref,
                                                "validation_fraction": fraction, "seed": seed})
    return resolve_version(catalog, version.id)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "dataset"


def default_dataset_name(path: Path) -> str:
    return _slug(path.stem)


def describe_bad_rows(bad: list[BadRow], *, limit: int = SHOWN_BAD_ROWS) -> str:
    unit = "line"
    shown = "; ".join(f"{unit} {b.line}: {b.reason}" for b in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return shown + more


def inspect_file(path: str | os.PathLike[str], *, fmt: str | None = None,
                 sample: int = DETECT_ROWS) -> dict[str, Any]:
    """The format, the columns and the first rows of a file, for a mapping dialog."""
    src = Path(path).expanduser()
    fmt = detect_format(src, fmt)
    columns: dict[str, None] = {}
    rows: list[Any] = []
    for raw in read_source_rows(src, fmt):
        if raw.data is None:
            continue
        if isinstance(raw.data, dict):
            columns.update(dict.fromkeys(raw.data))
        rows.append(raw.data)
        if len(rows) >= sample:
            break
    try:
        shape, mapping = detect_shape(columns)
    except InvalidInputError:
        shape, mapping = None, {}
    return {"format": fmt, "columns": list(columns), "rows": rows[:20], "shape": shape,
            "mapping": mapping}


def import_dataset(
    catalog: Catalog, path: str | os.PathLike[str], *, name: str | None = None,
    fmt: str | None = None, shape: str | None = None,
    mapping: Mapping[str, str] | Iterable[str] | None = None, keep_good_rows: bool = False,
    validation: float = 0.1, seed: int = 0, description: str = "",
    progress: Callable[[int, int | None], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> DatasetVersion:
    """Import a file as the next version of dataset ``name``.

    Rows that do not fit are never dropped silently: without ``keep_good_rows`` the
    import is refused with a :class:`BadRowsError` that lists them by line; with it, the
    good rows are imported and the bad ones recorded in the version's metadata.
    ``progress(rows_read, total or None)`` is called now and then; ``cancelled()`` is
    checked as often.
    """
    src = Path(path).expanduser().absolute()
    if not src.is_file():
        raise InvalidInputError(f"{src} does not exist or is not a file.")
    fmt = detect_format(src, fmt)
    name = (name or default_dataset_name(src)).strip()
    if not name or "@" in name or name.isdigit():
        raise InvalidInputError(f"Dataset name {name!r} is not allowed: it must not be empty, "
                                "contain '@' or be a plain number.")
    wanted = parse_mapping(mapping)
    total_bytes = src.stat().st_size

    columns: dict[str, None] = {}
    for i, raw in enumerate(read_source_rows(src, fmt)):
        if isinstance(raw.data, dict):
            columns.update(dict.fromkeys(raw.data))
        if i >= DETECT_ROWS:
            break
    if not columns:
        raise EmptySourceError(f"{src.name} holds no rows with named fields; nothing to import.")
    shape, full_map = detect_shape(columns, wanted, shape)

    staging = catalog.home.datasets_dir / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        bad: list[BadRow] = []
        blank = 0
        good = empty = dups = 0
        seen: set[bytes] = set()
        lengths: list[int] = []
        h = hashlib.sha256()
        with open(staging / DATA_FILE, "w", encoding="utf-8", newline="\n") as out:
            for i, raw in enumerate(read_source_rows(src, fmt)):
                if i % 2000 == 0:
                    if cancelled is not None and cancelled():
                        raise CancelledError("Import cancelled; nothing was kept.")
                    if progress is not None:
                        progress(i, None)
                if raw.blank:
                    blank += 1
                    continue
                if raw.error is not None:
                    bad.append(BadRow(raw.line, raw.error))
                    continue
                try:
                    row = normalize_row(raw.data, shape, full_map)
                except RowError as exc:
                    bad.append(BadRow(raw.line, str(exc)))
                    continue
                line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                data = line.encode("utf-8")
                h.update(data)
                out.write(line)
                good += 1
                key = hashlib.blake2b(data, digest_size=16).digest()
                if key in seen:
                    dups += 1
                else:
                    seen.add(key)
                if is_empty(row, shape):
                    empty += 1
                lengths.append(len(line))
        if progress is not None:
            progress(good + len(bad) + blank, good + len(bad) + blank)
        if bad and not keep_good_rows:
            raise BadRowsError(
                f"{src.name}: {len(bad)} of {good + len(bad)} rows do not fit the {shape} shape, "
                f"so nothing was imported. {describe_bad_rows(bad)}. Fix them, or import with "
                "--keep-good-rows to import the other rows and record these in the version.",
                bad)
        if good == 0:
            raise EmptySourceError(f"{src.name} has no usable rows; nothing was imported.")
        sha = h.hexdigest()
        source_sha = sha256_file(src)
        split = _split_record(good, validation, seed)
        metadata = {
            "columns": list(columns), "source_bytes": total_bytes,
            "bad_rows": [b.to_json() for b in bad], "blank_lines": blank,
            "empty_rows": empty, "duplicates": dups,
            "chars": _length_stats(lengths),
        }
        with catalog.transaction() as conn:
            existing = catalog.rows(_SELECT + " WHERE d.name = ? AND v.sha256 = ?", (name, sha))
            if existing:
                v = DatasetVersion.from_row(existing[0])
                raise ConflictError(f"These rows are already {v.ref} (same sha256); nothing was "
                                    "imported.")
            row = conn.execute("SELECT id FROM datasets WHERE name = ?", (name,)).fetchone()
            if row:
                dataset_id = int(row[0])
            else:
                dataset_id = int(conn.execute(
                    "INSERT INTO datasets (name, description, created_at) VALUES (?, ?, ?)",
                    (name, description, utcnow())).lastrowid)
            version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions "
                                   "WHERE dataset_id = ?", (dataset_id,)).fetchone()[0]
            final = safe_join(catalog.home.datasets_dir, f"{_slug(name)}-v{version}-{sha[:12]}",
                              what="dataset folder")
            cur = conn.execute(
                "INSERT INTO dataset_versions (dataset_id, version, path, source, format, sha256, "
                "source_sha256, rows, shape, mapping, split, metadata, created_at) VALUES "
                "(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (dataset_id, version, str(final), str(src), fmt, sha, source_sha, good, shape,
                 json.dumps(full_map), json.dumps(split), json.dumps(metadata), utcnow()))
            version_id = int(cur.lastrowid)
            catalog.audit("dataset-import", details={
                "dataset": f"{name}@{version}", "source": str(src), "rows": good,
                "bad_rows": len(bad), "sha256": sha})
            shutil.copyfile(src, safe_join(staging, f"source{src.suffix.lower()}",
                                           what="dataset source copy"))
            if final.exists():
                shutil.rmtree(final)  # a leftover of a crash; not in the catalog
            os.replace(staging, final)
        return resolve_version(catalog, version_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _length_stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {}
    s = sorted(values)
    return {"min": s[0], "max": s[-1], "mean": round(sum(s) / len(s), 1),
            "p50": s[len(s) // 2], "p95": s[min(len(s) - 1, int(len(s) * 0.95))]}


def remove_version(catalog: Catalog, ref: str | int) -> DatasetVersion:
    version = resolve_version(catalog, ref)
    with catalog.transaction() as conn:
        conn.execute("DELETE FROM dataset_versions WHERE id = ?", (version.id,))
        conn.execute("DELETE FROM datasets WHERE id = ? AND NOT EXISTS (SELECT 1 FROM "
                     "dataset_versions WHERE dataset_id = ?)", (version.dataset_id, version.dataset_id))
        catalog.audit("dataset-remove", details={"dataset": version.ref})
    try:
        version.path.relative_to(catalog.home.datasets_dir)
        shutil.rmtree(version.path, ignore_errors=True)
    except ValueError:
        pass
    return version

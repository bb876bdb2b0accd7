"""The catalog: records, lineage, tags, removal, jobs, audit, and schema migrations."""

from __future__ import annotations

import sqlite3

import pytest

from llmops_desktop.catalog import ArtifactFile, Catalog, JobState
from llmops_desktop.catalog.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from llmops_desktop.errors import (
    ArtifactNotFoundError,
    CatalogError,
    DuplicateArtifactError,
    HasDependentsError,
)


def _add(catalog: Catalog, name: str, sha: str, parent: int | None = None, kind: str = "hf"):
    folder = catalog.home.models_dir / f"{name}-{sha}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "w.bin").write_bytes(sha.encode())
    return catalog.add_artifact(model_name=name, kind=kind, storage="copy", path=folder,
                                files=[ArtifactFile("w.bin", 3, sha * 64)], parent_id=parent,
                                params={"q": sha}, metadata={"architecture": "llama"})


def test_catalog_uses_wal_and_current_schema(catalog: Catalog) -> None:
    assert catalog.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert catalog.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = set(catalog.db.table_names())
    assert {"models", "artifacts", "artifact_files", "jobs", "audit_log", "tags"} <= tables


def test_versions_lineage_and_resolve(catalog: Catalog) -> None:
    base = _add(catalog, "llama", "a")
    child = _add(catalog, "llama", "b", parent=base.id)
    grandchild = _add(catalog, "llama-q4", "c", parent=child.id, kind="gguf")
    assert (base.version, child.version, grandchild.version) == (1, 2, 1)
    assert catalog.resolve("llama").id == child.id  # latest version
    assert catalog.resolve("llama@1").id == base.id
    assert catalog.resolve(str(grandchild.id)).id == grandchild.id
    assert [a.id for a in catalog.ancestors(grandchild.id)] == [child.id, base.id]
    assert [a.id for a in catalog.descendants(base.id)] == [child.id, grandchild.id]
    assert catalog.artifact(grandchild.id).params == {"q": "c"}
    with pytest.raises(ArtifactNotFoundError):
        catalog.resolve("nope")


def test_duplicate_content_is_refused(catalog: Catalog) -> None:
    first = _add(catalog, "m", "a")
    with pytest.raises(DuplicateArtifactError) as info:
        _add(catalog, "other-name", "a")
    assert info.value.existing_id == first.id
    assert catalog.counts()["artifacts"] == 1


def test_remove_refuses_with_dependents_then_cascades(catalog: Catalog) -> None:
    base = _add(catalog, "m", "a")
    child = _add(catalog, "m", "b", parent=base.id)
    with pytest.raises(HasDependentsError, match="--cascade"):
        catalog.remove_artifact(base.id)
    assert base.path.exists()
    removed = catalog.remove_artifact(base.id, cascade=True)
    assert [a.id for a in removed] == [child.id, base.id]
    assert not base.path.exists() and not child.path.exists()
    assert catalog.counts() == {"models": 0, "artifacts": 0, "artifact_files": 0, "jobs": 0}
    actions = [e.action for e in catalog.audit_entries()]
    assert actions.count("remove") == 2


def test_referenced_files_are_never_deleted(catalog: Catalog, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"abc")
    a = catalog.add_artifact(model_name="ref", kind="hf", storage="reference", path=outside,
                             files=[ArtifactFile("w.bin", 3, "f" * 64)])
    catalog.remove_artifact(a.id)
    assert (outside / "w.bin").read_bytes() == b"abc"


def test_tags_and_audit(catalog: Catalog) -> None:
    a = _add(catalog, "m", "a")
    assert catalog.set_tags(a.id, add=["prod", "llama"]) == ("llama", "prod")
    assert catalog.set_tags(a.id, remove=["prod"]) == ("llama",)
    assert catalog.artifacts()[0].tags == ("llama",)
    entries = catalog.audit_entries(artifact_id=a.id)
    assert [e.action for e in entries] == ["tag", "tag", "import"]
    assert all(e.user and e.host and e.ts.endswith("Z") for e in entries)


def test_job_rows_move_through_states(catalog: Catalog) -> None:
    job = catalog.create_job("import", {"path": "/x"})
    assert job.state is JobState.QUEUED and job.log_path.name == f"job-{job.id}.log"
    catalog.update_job(job.id, state=JobState.RUNNING, progress=0.5, message="half")
    assert catalog.job(job.id).progress == 0.5
    assert catalog.finish_job(job.id, JobState.SUCCEEDED, result={"artifact_id": 1})
    assert not catalog.finish_job(job.id, JobState.FAILED, error="late")  # already final
    done = catalog.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.result == {"artifact_id": 1}
    assert done.finished_at is not None


def test_migrates_a_database_made_by_the_first_schema(home) -> None:
    """A catalog written by schema 1 opens, keeps its rows, and gains what v2 added."""
    conn = sqlite3.connect(home.catalog_path, isolation_level=None)
    migrate(conn, target=1)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute("INSERT INTO models (id, name, created_at) VALUES (1, 'old', '2025-01-01')")
    conn.execute("INSERT INTO artifacts (id, model_id, version, kind, state, storage, path, "
                 "size_bytes, created_at) VALUES (1, 1, 1, 'gguf', 'ready', 'copy', '/m', 3, "
                 "'2025-01-01')")
    conn.execute("INSERT INTO artifact_files VALUES (1, 'm.gguf', 3, ?)", ("ab" * 32,))
    conn.close()

    with Catalog.open(home) as catalog:
        assert catalog.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        old = catalog.artifact(1)
        assert old.model_name == "old" and old.kind == "gguf"
        from llmops_desktop.hashing import content_digest

        assert old.content_digest == content_digest([("m.gguf", "ab" * 32)])
        assert catalog.set_tags(1, add=["migrated"]) == ("migrated",)


def test_a_newer_schema_is_refused_not_damaged(home) -> None:
    conn = sqlite3.connect(home.catalog_path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(CatalogError, match="newer"):
        Catalog.open(home)


def test_a_failed_migration_leaves_the_old_schema(home, monkeypatch) -> None:
    conn = sqlite3.connect(home.catalog_path, isolation_level=None)
    migrate(conn, target=1)

    def broken(c):
        c.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("disk hiccup")

    from llmops_desktop.catalog import schema

    monkeypatch.setattr(schema, "MIGRATIONS", [MIGRATIONS[0], broken])
    with pytest.raises(RuntimeError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names

"""Sharing as a user drives it: the Export dialog makes a package through a real job, the
Registries page lists what was published (marking what is here) and pulls with the signer
question, a dropped package imports, governance status needs a comment, and the trust list
in Settings. Offscreen."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from llmops_desktop.catalog import Artifact, Catalog  # noqa: E402
from llmops_desktop.paths import Home  # noqa: E402
from llmops_desktop.qt.main_window import MainWindow  # noqa: E402

JOB_TIMEOUT_MS = 90_000


def add_to_catalog(catalog: Catalog, path: Path, name: str) -> Artifact:
    from llmops_desktop.importer import import_model, inspect_source

    for _ in import_model(catalog, inspect_source(path, name=name),
                          staging=catalog.home.staging_dir / "test-import"):
        pass
    return catalog.resolve(name)


def wait_finished(qtbot, window: MainWindow, job_id: int) -> str:
    if window.ctx.catalog.job(job_id).state.finished:
        return window.ctx.catalog.job(job_id).state.value
    with qtbot.waitSignal(window.ctx.jobs.sig_job_finished, timeout=JOB_TIMEOUT_MS,
                          check_params_cb=lambda jid, _s: jid == job_id) as done:
        pass
    return done.args[1]


def open_dialog(qtbot, window: MainWindow, artifact: Artifact):
    page = window.models_page
    qtbot.waitUntil(lambda: page.select_artifact(artifact.id), timeout=10_000)
    assert page.act_export.isEnabled()
    dialog = page.open_export_dialog()
    qtbot.addWidget(dialog)
    return dialog


def test_export_dialog_makes_a_package_through_a_job(qtbot, window, catalog, demo_model_dir,
                                                     tmp_path):
    hf = add_to_catalog(catalog, demo_model_dir, "demo-tiny-llama")
    window.models_page.reload()
    dialog = open_dialog(qtbot, window, hf)
    assert dialog.format() == "package"
    # Ollama needs a GGUF: that format is offered but disabled for an HF artifact.
    assert not dialog.format_combo.model().item(1).isEnabled()
    with qtbot.waitSignal(dialog.sig_estimated, timeout=10_000) as est:
        dialog.sign_check.setChecked(False)
        dialog.sign_check.setChecked(True)
    size = est.args[0]
    assert size and "About" in dialog.estimate_label.text()
    out = tmp_path / "exports" / "demo.llmpkg"
    dialog.path_edit.setText(str(out))
    with qtbot.waitSignal(dialog.sig_started, timeout=10_000) as started:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    job_id = started.args[0]
    assert wait_finished(qtbot, window, job_id) == "succeeded"
    qtbot.waitUntil(lambda: "Exported to" in dialog.status_label.text(), timeout=10_000)
    assert out.is_file() and abs(out.stat().st_size - size) < 512
    assert dialog.progress.value() == 1000 and dialog.cancel_button.text() == "Close"
    with tarfile.open(out) as tar:
        assert tar.getnames()[:2] == ["manifest.json", "manifest.sig"]
    job = catalog.job(job_id)
    assert job.kind == "export" and job.params["sign"] is True


def test_status_change_needs_a_comment_in_details(qtbot, window, catalog, demo_model_dir):
    from llmops_desktop.share.governance import get_status

    hf = add_to_catalog(catalog, demo_model_dir, "demo-tiny-llama")
    window.models_page.reload()
    page = window.models_page
    qtbot.waitUntil(lambda: page.select_artifact(hf.id), timeout=10_000)
    box = page.details.status_box
    assert "draft" in box.status_label.text()
    box.combo.setCurrentText("approved")
    assert not box.apply()
    assert "needs a comment" in box.error_label.text() and get_status(catalog, hf.id) == "draft"
    box.comment.setText("reviewed by the team")
    with qtbot.waitSignal(box.sig_status_changed, timeout=2000):
        qtbot.mouseClick(box.change_button, Qt.MouseButton.LeftButton)
    assert get_status(catalog, hf.id) == "approved" and "approved" in box.status_label.text()
    history = page.details.history
    assert history.topLevelItem(0).text(1) == "status"
    assert "reviewed by the team" in history.topLevelItem(0).text(3)


def _answer(qtbot, importer, button) -> None:
    """Answer the next signer question the importer shows."""

    def click(box: QMessageBox) -> None:
        box.button(button).click()

    importer.sig_question.connect(click)


def test_registries_page_lists_published_package_marks_local_and_pulls(
        qtbot, window, catalog, home, demo_model_dir, demo_gguf, tmp_path):
    hf = add_to_catalog(catalog, demo_model_dir, "demo-tiny-llama")
    reg = tmp_path / "share"
    page = window.pages["registries"]
    page.add_registry("team", reg)
    window.models_page.reload()
    # Publish through the Export dialog: destination = the registry.
    dialog = open_dialog(qtbot, window, hf)
    dialog.dest_combo.setCurrentIndex(dialog.dest_combo.findData("team"))
    assert not dialog.path_edit.isVisible()
    with qtbot.waitSignal(dialog.sig_started, timeout=10_000) as started:
        dialog.start()
    assert wait_finished(qtbot, window, started.args[0]) == "succeeded"
    # A colleague publishes another model into the same folder from their own home.
    other = Home.resolve(tmp_path / "colleague")
    with Catalog.open(other) as cat_b:
        gguf = add_to_catalog(cat_b, demo_gguf, "colleague-f16")
    env_cli = [sys.executable, "-m", "llmops_desktop.cli", "--home", str(other.root)]
    subprocess.run([*env_cli, "registry", "add", "team", str(reg)], check=True,
                   capture_output=True)
    subprocess.run([*env_cli, "publish", gguf.ref, "--to", "team"], check=True,
                   capture_output=True)

    window.show_page("registries")
    with qtbot.waitSignal(page.sig_listed, timeout=10_000) as listed:
        page.refresh()
    assert listed.args[0] == 2
    models = page.row_texts(1)
    here = dict(zip(models, page.row_texts(6)))
    assert here[hf.ref] == f"✓ {hf.ref}" and here[gguf.ref] == ""
    assert set(page.row_texts(5)) == {"signed"}

    # Pull the colleague's package: signed by a key we do not trust yet -> a question.
    name = page.row_texts(0)[models.index(gguf.ref)]
    assert page.select_package(name)
    from llmops_desktop.qt.share_widgets import PackageImporter

    importer = page.findChild(PackageImporter) or PackageImporter(window.ctx, page)
    _answer(qtbot, importer, QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(page.sig_pull_started, timeout=10_000) as pull:
        page.pull_selected()
    assert wait_finished(qtbot, window, pull.args[0]) == "succeeded"
    qtbot.waitUntil(lambda: "✓" in dict(zip(page.row_texts(1), page.row_texts(6)))[gguf.ref],
                    timeout=10_000)
    pulled = catalog.resolve("colleague-f16")
    assert pulled.content_digest == gguf.content_digest
    assert catalog.job(pull.args[0]).params["accept_fingerprint"].startswith("SHA256:")


def test_dropped_package_asks_about_unsigned_and_imports(qtbot, window, catalog, home,
                                                         demo_model_dir, tmp_path):
    other = Home.resolve(tmp_path / "colleague")
    with Catalog.open(other) as cat_b:
        hf = add_to_catalog(cat_b, demo_model_dir, "from-colleague")
    pkg = tmp_path / "from-colleague.llmpkg"
    subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(other.root),
                    "export", hf.ref, "-o", str(pkg)], check=True, capture_output=True)
    from llmops_desktop.qt.share_widgets import PackageImporter

    importer = PackageImporter(window.ctx, window)
    _answer(qtbot, importer, QMessageBox.StandardButton.No)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(pkg))])
    event = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(importer.sig_refused, timeout=10_000) as refused:
        window.dropEvent(event)
    assert event.isAccepted() and refused.args[1] == "declined by the user"
    assert catalog.artifacts() == []
    importer.sig_question.disconnect()
    _answer(qtbot, importer, QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(importer.sig_started, timeout=10_000) as started:
        window.dropEvent(QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime,
                                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    assert wait_finished(qtbot, window, started.args[0]) == "succeeded"
    assert catalog.resolve("from-colleague").content_digest == hf.content_digest


def test_settings_trust_list_and_own_key(qtbot, window, tmp_path):
    from llmops_desktop.share import keys

    box = window.pages["settings"].trust_box
    assert "no signing key yet" in box.own_label.text()  # made on first use, not on start
    mine = box.export_public_key_to(tmp_path / "me.pub")
    assert mine.read_text().startswith("ssh-ed25519 ")
    own = keys.ensure_keypair(window.ctx.home).fingerprint
    assert own in box.own_label.text()
    colleague = Home.resolve(tmp_path / "colleague")
    their = keys.export_public_key(colleague, tmp_path / "bob.pub")
    with qtbot.waitSignal(box.sig_trust_changed, timeout=2000):
        assert box.trust_file("bob", their)
    assert box.names() == ["bob"]
    assert box.tree.topLevelItem(0).text(1) == keys.ensure_keypair(colleague).fingerprint
    assert not box.trust_file("bob-again", their)
    assert "already trusted as 'bob'" in box.message.text()
    box.tree.setCurrentItem(box.tree.topLevelItem(0))
    box.remove_selected()
    assert box.names() == [] and keys.trusted_keys(window.ctx.home) == []


def test_registries_page_shows_signed_and_status_only_after_verifying(qtbot, window, tmp_path):
    """The index of a shared folder says what a publisher claims; the page shows "not
    verified yet" until it has read each package, then what the package itself says."""
    import json

    from llmops_desktop.share import keys
    from tests.test_hostile_packages import tiny_files, tiny_manifest, write_package

    share = tmp_path / "share"
    share.mkdir()
    colleague = Home.resolve(tmp_path / "colleague")
    manifest = tiny_manifest(tiny_files("s"), "really-signed", status="approved")
    write_package(share / "really-signed.llmpkg", tiny_files("s"), manifest=manifest,
                  signature=keys.sign_manifest(colleague, manifest), name="really-signed")
    write_package(share / "claims-signed.llmpkg", tiny_files("c"), name="claims-signed",
                  manifest=tiny_manifest(tiny_files("c"), "claims-signed", status="draft"))
    write_package(share / "hostile.llmpkg", manifest=b"[" * 200_000)
    lie = {"signed_by": keys.ensure_keypair(colleague).fingerprint, "status": "approved"}
    (share / "index.json").write_text(json.dumps({
        "format": "llmops-registry", "format_version": 1, "packages": [
            {**lie, "name": n, "file": f"{n}.llmpkg", "ref": f"{n}@1"}
            for n in ("really-signed", "claims-signed", "hostile")]}))
    page = window.pages["registries"]
    window.show_page("registries")
    seen: list[tuple[list[str], list[str]]] = []
    page.sig_index_read.connect(lambda _n: seen.append((page.row_texts(4), page.row_texts(5))))
    with qtbot.waitSignal(page.sig_listed, timeout=20_000) as listed:
        page.add_registry("team", share)
    assert listed.args[0] == 3
    assert seen, "the index was not shown before verification"
    for status, signed in seen:  # before: nothing taken from the index
        assert set(status) == set(signed) == {"not verified yet"}
    rows = dict(zip(page.row_texts(0), zip(page.row_texts(4), page.row_texts(5))))
    assert rows["really-signed"] == ("approved", "signed")
    assert rows["claims-signed"] == ("draft", "unsigned")
    assert rows["hostile"] == ("refused", "refused")
    assert "levels deep" in page.status.text()
    assert not page.select_package("hostile") or not page.pull_button.isEnabled()


def test_accept_question_binds_the_manifest_digest_shown(qtbot, window, catalog, tmp_path):
    """The user says Yes to the package they were shown; if the file became another one
    meanwhile, the import job refuses it."""
    import hashlib
    import os

    from llmops_desktop.qt.share_widgets import PackageImporter
    from tests.test_hostile_packages import tiny_files, tiny_manifest, write_package

    manifest = tiny_manifest(tiny_files("shown"), "shown")
    pkg = write_package(tmp_path / "p.llmpkg", tiny_files("shown"), manifest=manifest,
                        name="shown")
    other = write_package(tmp_path / "o.llmpkg", tiny_files("swapped"), name="swapped")
    shown = hashlib.sha256(manifest).hexdigest()
    importer = PackageImporter(window.ctx, window)
    texts: list[str] = []

    def answer(box: QMessageBox) -> None:
        texts.append(box.text())
        os.replace(other, pkg)  # while the question is on screen
        box.button(QMessageBox.StandardButton.Yes).click()

    importer.sig_question.connect(answer)
    with qtbot.waitSignal(importer.sig_started, timeout=10_000) as started:
        importer.start(pkg)
    job_id = started.args[0]
    assert shown[:16] in texts[0] and "not signed" in texts[0]
    assert catalog.job(job_id).params["accept_manifest_sha256"] == shown
    assert wait_finished(qtbot, window, job_id) == "failed"
    assert "changed after you accepted it" in (catalog.job(job_id).error or "")
    assert catalog.artifacts() == []

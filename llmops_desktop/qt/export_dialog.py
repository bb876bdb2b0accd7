"""The Export dialog: a package (to a file or a registry), an Ollama folder or an HF folder.

What goes in and the package's size are shown before the start (estimated in a thread);
the export runs as an ``export`` job, with its progress here and a Cancel button.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.formatting import human_size
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.share.export import ExportRequest

FORMATS = [("package", "Package (.llmpkg): signed, checksummed, with lineage"),
           ("ollama", "Ollama folder (GGUF + Modelfile)"),
           ("hf", "Hugging Face folder (with a README model card)")]


class ExportDialog(QDialog):
    """Export one artifact; not modal, so the window stays usable while it runs."""

    sig_estimated = Signal(object)
    """The size estimate is shown (bytes, or None when it could not be made)."""
    sig_started = Signal(int)
    """The export job started (job id)."""
    sig_finished = Signal(int, str)
    """The export job ended (job id, final state)."""

    def __init__(self, ctx: AppContext, artifact: Artifact, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from llmops_desktop.share.package import available_variants
        from llmops_desktop.share.registry import registries

        self.ctx = ctx
        self.artifact = artifact
        self.job_id: int | None = None
        self._estimate_seq = 0
        self.setWindowTitle(f"Export {artifact.ref}")
        self.format_combo = QComboBox()
        for key, text in FORMATS:
            self.format_combo.addItem(text, key)
        model = self.format_combo.model()
        if artifact.kind != "gguf":
            model.item(1).setEnabled(False)
            model.item(1).setToolTip("Ollama runs GGUF files: export one of its GGUF variants")
        if artifact.kind not in ("hf", "lora"):
            model.item(2).setEnabled(False)
        self.parents_check = QCheckBox("Include the artifacts it was made from (lineage)")
        self.parents_check.setEnabled(artifact.parent_id is not None)
        self.variants_list = QListWidget()
        self.variants_list.setMaximumHeight(90)
        for vtype, v in sorted(available_variants(ctx.catalog, artifact.id).items()):
            item = QListWidgetItem(f"{vtype}  ({v.ref}, {human_size(v.size_bytes)})")
            item.setData(Qt.ItemDataRole.UserRole, vtype)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.variants_list.addItem(item)
        self.variants_list.setVisible(self.variants_list.count() > 0)
        self.sign_check = QCheckBox("Sign with my key")
        self.sign_check.setChecked(True)
        self.sign_check.setToolTip("Colleagues who trust your public key see who made the "
                                   "package and that nothing in it changed")
        self.dest_combo = QComboBox()
        self.dest_combo.addItem("A file or folder", "")
        for name, path in registries(ctx.settings).items():
            self.dest_combo.addItem(f"Registry {name} ({path})", name)
        self.path_edit = QLineEdit()
        self.browse = QToolButton()
        self.browse.setIcon(icon("folder"))
        self.browse.clicked.connect(self._on_browse_clicked)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse)
        self.system_edit = QLineEdit()
        self.system_edit.setPlaceholderText("optional: the Modelfile's SYSTEM prompt")
        self.estimate_label = QLabel("Estimating…")
        self.estimate_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton(icon("export"), "Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        self.cancel_button = QPushButton(icon("cancel"), "Close")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        form = QFormLayout()
        form.addRow("Format:", self.format_combo)
        self.variants_label = QLabel("Variants:")
        form.addRow("Lineage:", self.parents_check)
        form.addRow(self.variants_label, self.variants_list)
        form.addRow("Signature:", self.sign_check)
        form.addRow("Destination:", self.dest_combo)
        self.path_label = QLabel("Path:")
        form.addRow(self.path_label, path_row)
        self.system_label = QLabel("System prompt:")
        form.addRow(self.system_label, self.system_edit)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.format_combo.currentIndexChanged.connect(self._on_options_changed)
        self.parents_check.toggled.connect(self._on_options_changed)
        self.sign_check.toggled.connect(self._on_options_changed)
        self.variants_list.itemChanged.connect(self._on_options_changed)
        self.dest_combo.currentIndexChanged.connect(self._on_options_changed)
        ctx.jobs.sig_job_progress.connect(self._on_job_progress)
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        self.resize(620, 420)
        self._on_options_changed()

    # ---- options ----------------------------------------------------------------------------

    def format(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, key: str) -> None:
        self.format_combo.setCurrentIndex(self.format_combo.findData(key))

    def registry(self) -> str | None:
        return self.dest_combo.currentData() or None

    def variants(self) -> list[str]:
        out = []
        for i in range(self.variants_list.count()):
            item = self.variants_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def set_variant_checked(self, vtype: str, checked: bool = True) -> None:
        for i in range(self.variants_list.count()):
            item = self.variants_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == vtype:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def request(self) -> ExportRequest:
        """What the dialog's options ask for (not yet checked)."""
        fmt = self.format()
        package = fmt == "package"
        registry = self.registry() if package else None
        output = self.path_edit.text().strip()
        return ExportRequest(
            artifact_id=self.artifact.id, format=fmt,
            output=str(Path(output).expanduser().absolute()) if output and not registry else None,
            with_parents=package and self.parents_check.isChecked(),
            variants=tuple(self.variants()) if package else (),
            sign=package and self.sign_check.isChecked(), registry=registry,
            system=self.system_edit.text().strip() or None if fmt == "ollama" else None)

    def _default_path(self) -> str:
        from llmops_desktop.share.package import default_package_name, slug

        base = Path.home()
        if self.format() == "package":
            return str(base / default_package_name(self.artifact))
        return str(base / f"{slug(self.artifact.model_name)}-v{self.artifact.version}-"
                          f"{self.format()}")

    def _on_options_changed(self, *args: object) -> None:
        fmt = self.format()
        package = fmt == "package"
        for w in (self.parents_check, self.sign_check, self.dest_combo, self.variants_list,
                  self.variants_label):
            w.setVisible(package and (w not in (self.variants_list, self.variants_label)
                                      or self.variants_list.count() > 0))
        self.parents_check.setEnabled(self.artifact.parent_id is not None)
        to_registry = package and self.registry() is not None
        for w in (self.path_edit, self.browse, self.path_label):
            w.setVisible(not to_registry)
        self.system_edit.setVisible(fmt == "ollama")
        self.system_label.setVisible(fmt == "ollama")
        current = self.path_edit.text().strip()
        if not current or current == getattr(self, "_auto_path", None):
            self._auto_path = self._default_path()
            self.path_edit.setText(self._auto_path)
        self._estimate()

    def _estimate(self) -> None:
        """Size of what would be written, computed in a thread with its own catalog."""
        self._estimate_seq += 1
        seq = self._estimate_seq
        request = self.request()
        home = self.ctx.home
        self.estimate_label.setText("Estimating…")

        def work() -> tuple[int, list[dict[str, Any]]]:
            from llmops_desktop.share.package import estimate_size, plan_export

            with Catalog.open(home) as catalog:
                if request.format != "package":
                    a = catalog.artifact(request.artifact_id)
                    return a.size_bytes, [{"ref": a.ref, "size_bytes": a.size_bytes}]
                plan = plan_export(catalog, request.artifact_id,
                                   with_parents=request.with_parents,
                                   variants=request.variants)
                return estimate_size(catalog, plan, sign=request.sign), plan.summary()

        def done(result: tuple[int, list[dict[str, Any]]]) -> None:
            if seq != self._estimate_seq:
                return
            size, items = result
            refs = ", ".join(i["ref"] for i in items)
            self.estimate_label.setText(f"About <b>{human_size(size)}</b> to write "
                                        f"({len(items)} artifact{'s' if len(items) != 1 else ''}"
                                        f": {refs}).")
            self.estimated_bytes = size
            self.sig_estimated.emit(size)

        def failed(exc: BaseException) -> None:
            if seq == self._estimate_seq:
                self.estimate_label.setText(f"Cannot export with these options: {exc}")
                self.sig_estimated.emit(None)

        run_in_thread(work, done, failed, receiver=self)

    def _on_browse_clicked(self) -> None:
        start = self.path_edit.text() or str(Path.home())
        if self.format() == "package":
            path, _ = QFileDialog.getSaveFileName(self, "Save the package", start,
                                                  "LLMOps packages (*.llmpkg)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into an empty folder", start)
        if path:
            self.path_edit.setText(path)

    # ---- the job ----------------------------------------------------------------------------

    def start(self) -> int | None:
        """Start the export job; returns its id (None if the options are incomplete)."""
        if self.job_id is not None:
            return self.job_id
        request = self.request()
        if not request.output and not request.registry:
            self.status_label.setText("Choose where to write the export.")
            return None
        try:
            request = request.check(self.ctx.catalog)
        except InvalidInputError as exc:
            self.status_label.setText(str(exc))
            return None
        job = self.ctx.jobs.start(request)
        self.job_id = job.id
        self.export_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.progress.setValue(0)
        self.progress.show()
        self.status_label.setText(f"Exporting (job #{job.id})…")
        self.sig_started.emit(job.id)
        return job.id

    def _on_cancel_clicked(self) -> None:
        if self.job_id is not None and self.cancel_button.text() == "Cancel":
            self.ctx.jobs.cancel(self.job_id)
            self.status_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)
        else:
            self.close()

    def _on_job_progress(self, job_id: int, fraction: object, message: str) -> None:
        if job_id != self.job_id:
            return
        if isinstance(fraction, float):
            self.progress.setValue(int(fraction * 1000))
        if message:
            self.status_label.setText(message)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        if job_id != self.job_id:
            return
        job = self.ctx.catalog.job(job_id)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Close")
        if state == "succeeded":
            result = job.result or {}
            self.progress.setValue(1000)
            signed = f", signed {result['signed_by']}" if result.get("signed_by") else ""
            self.result_path = str(result.get("path", ""))
            self.status_label.setText(f"Exported to {result.get('path')} "
                                      f"({human_size(result.get('size_bytes') or 0)}{signed}).")
        else:
            self.progress.hide()
            self.status_label.setText(f"Export {state}: {job.error or ''}")
            self.job_id = None
            self.export_button.setEnabled(True)
        self.sig_finished.emit(job_id, state)


def open_export_dialog(ctx: AppContext, artifact_id: int, parent: QWidget) -> ExportDialog:
    """Open (not modally) the Export dialog for an artifact."""
    dialog = ExportDialog(ctx, ctx.catalog.artifact(artifact_id), parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog

"""The Evaluate page's "Run an evaluation" tab: artifacts, a suite version, an optional limit
and judge (a deployment, an address, or the window's gateway with one of its models and a
key), and a button that starts the same ``eval`` job ``llmops eval`` does (an
``EvalRequest`` through the window's job controller, so progress and cancel show in the
status bar and on the Jobs page)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.fields import spec_of
from llmops_desktop.qt.context import AppContext

EVALUATED_KINDS = ("hf", "gguf")
NO_JUDGE = "no judge"


class RunForm(QWidget):
    """Choose what to evaluate on what, and start it as a job."""

    sig_started = Signal(int)
    """An eval job was started (its id)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.job_ids: list[int] = []
        self.gateway: Any = None  # the window's GatewayController, once attached
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.artifact_list = QListWidget()
        self.artifact_list.setToolTip("Tick the models to evaluate: Hugging Face folders run "
                                      "through torch, GGUF files through llama.cpp.")
        form.addRow("Artifacts", self.artifact_list)
        self.suite_combo = QComboBox()
        self.suite_combo.setToolTip("The suite version the artifacts answer (Suites tab)")
        form.addRow("Suite", self.suite_combo)
        self.limit_spin = QSpinBox(minimum=0, maximum=10_000_000)
        self.limit_spin.setSpecialValueText("all items")
        self.limit_spin.setToolTip("Evaluate only the first N items (a quick look before a "
                                   "full run)")
        form.addRow("Limit", self.limit_spin)
        self.judge_combo = QComboBox()
        self.judge_combo.setEditable(True)
        self.judge_combo.setToolTip("Judged items need a judge: a running deployment or the "
                                    "window's gateway (listed), or type the OpenAI-compatible "
                                    "address of a server or a gateway, http://HOST:PORT.")
        self.judge_combo.currentTextChanged.connect(lambda _: self._fill_judge_models())
        form.addRow("Judge", self.judge_combo)
        from llmops_desktop.evaluate.task import EvalRequest

        self.judge_model_combo = QComboBox()
        self.judge_model_combo.setEditable(True)
        self.judge_model_combo.lineEdit().setPlaceholderText("the first model it lists")
        self.judge_model_combo.setToolTip(spec_of(EvalRequest, "judge_model").description)
        form.addRow("Judge model", self.judge_model_combo)
        self.judge_key_edit = QLineEdit()
        self.judge_key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.judge_key_edit.setPlaceholderText("only if the judge asks for a key")
        self.judge_key_edit.setToolTip("The key the judge accepts (a gateway key: 'llmops apikey "
                                       "create NAME'). The job gets it in its environment; it "
                                       "is not stored with the job or the run.")
        form.addRow("Judge key", self.judge_key_edit)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.status, 1)
        self.start_button = QPushButton("Evaluate")
        self.start_button.setToolTip("Start the evaluation as a job (Ctrl+Return); it resumes "
                                     "where it stopped if cancelled.")
        self.start_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.start_button.clicked.connect(self.start)
        row.addWidget(self.start_button)
        layout.addLayout(row)
        layout.addStretch(1)

    def reload(self) -> None:
        from llmops_desktop.evaluate.suites import list_suites

        checked = set(self.checked_refs())
        self.artifact_list.clear()
        for a in self.ctx.catalog.artifacts():
            if a.kind not in EVALUATED_KINDS:
                continue
            item = QListWidgetItem(f"{a.ref}  ({'GGUF' if a.kind == 'gguf' else 'HF'})")
            item.setData(Qt.ItemDataRole.UserRole, a.ref)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if a.ref in checked
                               else Qt.CheckState.Unchecked)
            self.artifact_list.addItem(item)
        suite = self.suite_combo.currentData()
        self.suite_combo.clear()
        for v in list_suites(self.ctx.catalog):
            self.suite_combo.addItem(f"{v.ref}  ({v.items} items)", v.ref)
        if suite is not None:
            self.select_suite(suite)
        self._fill_judges()
        self.start_button.setEnabled(self.artifact_list.count() > 0
                                     and self.suite_combo.count() > 0)
        if not self.start_button.isEnabled():
            self.status.setText("Import a suite (Suites tab) and a model (Models page) to "
                                "evaluate." if self.suite_combo.count() == 0 else
                                "No Hugging Face or GGUF model in the catalog to evaluate.")

    def attach_gateway(self, gateway: Any) -> None:
        """Offer the window's gateway (a GatewayController) as a judge, with its models."""
        self.gateway = gateway
        gateway.sig_started.connect(lambda _: self._fill_judges())
        gateway.sig_models.connect(lambda _: self._fill_judges())
        gateway.sig_stopped.connect(lambda _: self._fill_judges())
        self._fill_judges()

    def _gateway_url(self) -> str:
        return (self.gateway.url or "") if self.gateway is not None else ""

    def _fill_judges(self) -> None:
        from llmops_desktop.serving.store import deployments

        judge = self.judge_combo.currentText()
        self.judge_combo.blockSignals(True)
        self.judge_combo.clear()
        self.judge_combo.addItem(NO_JUDGE, "")
        if self._gateway_url():
            self.judge_combo.addItem(f"gateway  ({self._gateway_url()})", self._gateway_url())
        for d in deployments(self.ctx.catalog):
            if d.state == "running":
                self.judge_combo.addItem(f"{d.name}", d.name)
        self.judge_combo.setCurrentText(judge or NO_JUDGE)
        self.judge_combo.blockSignals(False)
        self._fill_judge_models()

    def _fill_judge_models(self) -> None:
        """The gateway's models to choose from when it is the judge; else a typed name."""
        typed = self.judge_model_combo.currentText()
        self.judge_model_combo.clear()
        if self._gateway_url() and self.judge() == self._gateway_url():
            names = [str(m["model"]) for m in self.gateway.models if m.get("model")]
            self.judge_model_combo.addItems(names)
            if typed not in names and names:
                typed = names[0]
        self.judge_model_combo.setCurrentText(typed)

    def select_suite(self, ref: str) -> None:
        index = self.suite_combo.findData(ref)
        if index >= 0:
            self.suite_combo.setCurrentIndex(index)

    def set_checked(self, refs: list[str]) -> None:
        for i in range(self.artifact_list.count()):
            item = self.artifact_list.item(i)
            item.setCheckState(Qt.CheckState.Checked
                               if item.data(Qt.ItemDataRole.UserRole) in refs
                               else Qt.CheckState.Unchecked)

    def checked_refs(self) -> list[str]:
        return [self.artifact_list.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.artifact_list.count())
                if self.artifact_list.item(i).checkState() == Qt.CheckState.Checked]

    def judge(self) -> str | None:
        text = self.judge_combo.currentText().strip()
        index = self.judge_combo.findText(text)
        if index >= 0:
            text = self.judge_combo.itemData(index) or ""
        return text or None

    def judge_model(self) -> str | None:
        return self.judge_model_combo.currentText().strip() or None

    def start(self) -> int | None:
        """Check the request as the CLI does and start its job; returns the job id."""
        from llmops_desktop.evaluate.judge import judge_secrets
        from llmops_desktop.evaluate.suites import resolve_suite
        from llmops_desktop.evaluate.task import EvalRequest

        refs = self.checked_refs()
        if not refs:
            self.status.setText("Tick at least one artifact to evaluate.")
            return None
        try:
            suite = resolve_suite(self.ctx.catalog, self.suite_combo.currentData() or "")
            if suite.kinds.get("judged") and not self.judge():
                self.status.setText(f"{suite.ref} has {suite.kinds['judged']} judged items: "
                                    "choose a running deployment as the judge, or type a "
                                    "server's address (http://HOST:PORT).")
                self.judge_combo.setFocus()
                return None
            request = EvalRequest(artifacts=tuple(refs), suite=suite.ref,
                                  limit=self.limit_spin.value() or None,
                                  judge=self.judge(),
                                  judge_model=self.judge_model() if self.judge() else None,
                                  ).check(self.ctx.catalog)
            job = self.ctx.jobs.start(request,
                                      secrets=judge_secrets(self.judge_key_edit.text()))
        except (LLMOpsError, LookupError, ValueError) as exc:
            self.status.setText(f"Cannot start: {exc}")
            return None
        self.job_ids.append(job.id)
        self.status.setText(f"job #{job.id}: {', '.join(request.artifacts)} on {request.suite}. "
                            "Progress and Cancel are in the status bar and on the Jobs page; "
                            "the Results tab fills in when it ends.")
        self.sig_started.emit(job.id)
        return job.id

"""The Deployments page's "New deployment" form: which artifact, and how to serve it.

The serve options come from :class:`~llmops_desktop.serving.config.ServeOptions`' field specs
through :class:`~llmops_desktop.qt.forms.SpecForm` (the flags of ``llmops serve``), prefilled
with what :func:`~llmops_desktop.serving.defaults.suggest_options` chooses for the model on
this machine, each with its reason. A model without a chat template is said so, with the
template suggested for its architecture and why.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact, ArtifactState
from llmops_desktop.fields import FieldSpec, field_specs
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.forms import ComboBox, Editor, Override, SpecForm
from llmops_desktop.qt.gpu_placement import GpuPlacementBox
from llmops_desktop.serving.config import DEFAULT_HOST, ENGINE_FOR_KIND, ServeOptions
from llmops_desktop.serving.defaults import Hardware, suggest_options
from llmops_desktop.serving.deploy import DeployRequest

WARN_COLOR = "#c77c02"
_HAS_TEMPLATE_FIELD = any(s.name == "chat_template" for s in field_specs(ServeOptions))
MAIN_FIELDS = ("engine", "name", "host", "port") + (
    ("chat_template",) if _HAS_TEMPLATE_FIELD else ())
TUNING_FIELDS = ("ctx", "threads", "parallel", "gpu_layers")
ADVANCED_FIELDS = ("max_queue", "batch", "device", "quantization", "lora")
SUGGESTED_FIELDS = ("engine", "ctx", "threads", "parallel", "gpu_layers", "max_queue", "batch",
                    "device", "quantization")  # what suggest_options decides for a model


def _template_names() -> tuple[str, ...]:
    try:
        from llmops_desktop.serving.templates import template_names
    except ImportError:
        return ()
    return tuple(template_names())


def _lora_editor(spec: FieldSpec) -> Editor:
    """The LoRA GGUFs of the catalog (the form fills it in); none by default."""
    combo = ComboBox()
    combo.addItem("none", None)
    return Editor(combo, combo, combo.currentData,
                  lambda v: combo.setCurrentIndex(max(0, combo.findData(v))),
                  combo.currentIndexChanged)


OVERRIDES = {
    "engine": Override(none_text="by the model's kind", choice_texts={"vllm": "vLLM"}),
    "name": Override(none_text="default: NAME@VERSION"),
    "host": Override(suggestions=(DEFAULT_HOST, "0.0.0.0")),
    "port": Override(min_text="free port"),
    "ctx": Override(none_text="model's own", step=512),
    "threads": Override(none_text="auto"),
    "gpu_layers": Override(min_text="all"),
    "batch": Override(none_text="default", step=128),
    "device": Override(suggestions=("auto", "cpu", "cuda")),
    "quantization": Override(none_text="none"),
    "lora": Override(editor=_lora_editor),
    "chat_template": Override(none_text="the model's own", suggestions=("",)
                              + _template_names()),
}


def servable(artifact: Artifact) -> bool:
    return (artifact.state == ArtifactState.READY and artifact.kind in ENGINE_FOR_KIND
            and artifact.metadata.get("format") != "lora-gguf")


def lacks_chat_template(artifact: Artifact) -> bool:
    """The catalog knows the model has no chat template of its own."""
    return artifact.metadata.get("has_chat_template") is False


def template_advice(artifact: Artifact) -> tuple[str | None, str]:
    """The built-in template to suggest for a model without one, and why."""
    try:
        from llmops_desktop.serving.templates import suggest_for_architecture
    except ImportError:
        return None, "Give a chat template when serving it, or use plain completion."
    s = suggest_for_architecture(str(artifact.metadata.get("architecture") or ""))
    return s.name, s.reason


class DeployForm(QGroupBox):
    """Choose a ready artifact and its serve options; Start is the page's."""

    sig_artifact_changed = Signal(object)
    """The chosen artifact changed (its id, or None)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("New deployment", parent)
        self.ctx = ctx
        self.hardware: Hardware | None = None
        self._defaults_for: int | None = None
        self._suggested_template: str | None = None
        self._template_for: int | None = None
        self.artifact_combo = QComboBox()
        self.artifact_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.artifact_combo.setMinimumContentsLength(12)
        self.artifact_combo.setToolTip("A ready GGUF or Hugging Face artifact from the catalog")
        self.artifact_combo.currentIndexChanged.connect(self._on_artifact_changed)
        self.main_form = SpecForm(ServeOptions, names=MAIN_FIELDS, overrides=OVERRIDES)
        self.tuning_form = SpecForm(ServeOptions, names=TUNING_FIELDS, overrides=OVERRIDES)
        self.main_form.set_value("port", 0)  # a free port unless the user picks one
        inputs = {n: f.input(n) for f in (self.main_form, self.tuning_form) for n in f.editors}
        self.engine_combo, self.name_edit = inputs["engine"], inputs["name"]
        self.host_combo, self.port_spin = inputs["host"], inputs["port"]
        self.ctx_spin, self.threads_spin = inputs["ctx"], inputs["threads"]
        self.parallel_spin, self.gpu_layers_spin = inputs["parallel"], inputs["gpu_layers"]
        self.template_combo = inputs.get("chat_template")
        self.placement = GpuPlacementBox()
        self.placement.sig_vllm.connect(self.set_vllm_available)
        self.set_vllm_available(False, "Checking whether vLLM can run here…")
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        for form in (self.main_form, self.tuning_form, self.placement.form):
            form.sig_changed.connect(self.update_estimate)
        self.host_combo.currentTextChanged.connect(self._on_host_changed)
        self.api_key_edit = QLineEdit()
        self.api_key_edit.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.api_key_edit.setPlaceholderText("none (this machine only)")
        self.api_key_edit.setToolTip(
            "Key clients must send as 'Authorization: Bearer KEY'. Required for any address "
            "but 127.0.0.1. It reaches the server in its environment, never a command line, "
            "log or the catalog.")
        generate = QPushButton("Generate")
        generate.setToolTip("Fill in a new random key")
        generate.clicked.connect(self.generate_api_key)
        self.start_button = QPushButton(icon("resume"), "Start")
        self.start_button.setToolTip("Start serving (Ctrl+Return)")
        self.start_button.setShortcut("Ctrl+Return")
        self.defaults_label = QLabel()
        self.defaults_label.setWordWrap(True)
        self.defaults_label.setStyleSheet("color: palette(mid);")
        self.template_warning = QLabel()
        self.template_warning.setWordWrap(True)
        self.template_warning.setStyleSheet(f"color: {WARN_COLOR};")
        self.template_warning.hide()
        self.use_template_button = QPushButton("Use suggested template")
        self.use_template_button.clicked.connect(self.use_suggested_template)
        self.use_template_button.hide()

        left = QVBoxLayout()
        model_row = QFormLayout()
        model_row.addRow("Model", self.artifact_combo)
        left.addLayout(model_row)
        left.addWidget(self.main_form)
        key_row = QHBoxLayout()
        key_row.addWidget(self.api_key_edit, 1)
        key_row.addWidget(generate)
        main_layout = self.main_form.group_layout("")
        assert main_layout is not None
        main_layout.addRow("API key", key_row)
        warn_row = QHBoxLayout()
        warn_row.addWidget(self.template_warning, 1)
        warn_row.addWidget(self.use_template_button, 0, Qt.AlignmentFlag.AlignTop)
        start_row = QHBoxLayout()
        start_row.addWidget(self.start_button)
        start_row.addWidget(self.defaults_label, 1)
        outer = QVBoxLayout(self)
        layout = QHBoxLayout()
        layout.addLayout(left, 3)
        layout.addSpacing(12)
        layout.addWidget(self.tuning_form, 2, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(layout)
        outer.addWidget(self.placement)
        outer.addWidget(self._build_advanced())
        outer.addLayout(warn_row)
        outer.addLayout(start_row)
        self.placement.read()

    def _build_advanced(self) -> QWidget:
        """The options most deployments leave alone (``llmops serve`` has each as a flag)."""
        box = QGroupBox("Advanced")
        box.setCheckable(True)
        box.setChecked(False)  # folded: the defaults suit most deployments
        self.advanced_form = SpecForm(ServeOptions, names=ADVANCED_FIELDS, overrides=OVERRIDES)
        inputs = {n: self.advanced_form.input(n) for n in ADVANCED_FIELDS}
        self.max_queue_spin, self.batch_spin = inputs["max_queue"], inputs["batch"]
        self.device_combo, self.quantization_combo = inputs["device"], inputs["quantization"]
        self.lora_combo = inputs["lora"]
        outer = QVBoxLayout(box)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.advanced_form)
        self.advanced_form.setVisible(False)
        box.toggled.connect(self.advanced_form.setVisible)
        self.advanced_box = box
        return box

    # ---- public ---------------------------------------------------------------------------

    def serve_values(self) -> dict[str, Any]:
        """The serve options the form shows, by field name."""
        return {**self.main_form.values(), **self.tuning_form.values(),
                **self.advanced_form.values(), **self.placement.values()}

    def engine(self) -> str:
        """The engine the deployment will use: the chosen one, else the model kind's."""
        kind = self.artifact_combo.currentData(Qt.ItemDataRole.UserRole + 1)
        return self.engine_combo.currentData() or ENGINE_FOR_KIND.get(kind or "", "")

    def set_vllm_available(self, ok: bool, reason: str) -> None:
        """Offer vLLM, or grey it out with the reason (not installed, no NVIDIA GPU)."""
        index = self.engine_combo.findData("vllm")
        item = self.engine_combo.model().item(index)  # type: ignore[attr-defined]
        if item is None:
            return
        item.setEnabled(ok)
        item.setToolTip(reason if ok or reason.endswith("…") else f"Not available: {reason}")
        if not ok and self.engine_combo.currentIndex() == index:
            self.engine_combo.setCurrentIndex(0)

    def update_estimate(self) -> None:
        """The memory the chosen placement needs, per GPU, beside what each has free."""
        from dataclasses import fields

        known = {f.name for f in fields(ServeOptions)}
        values = {k: v for k, v in self.serve_values().items() if k in known}
        try:
            options = ServeOptions(**{**values, "engine": self.engine() or None})
        except (TypeError, ValueError):
            return
        self.placement.update_estimate(self.current_artifact(), options)

    def current_artifact(self) -> Artifact | None:
        artifact_id = self.artifact_combo.currentData()
        if artifact_id is None:
            return None
        try:
            return self.ctx.catalog.artifact(int(artifact_id))
        except Exception:  # noqa: BLE001 - removed meanwhile: the next reload drops it
            return None

    def reload_artifacts(self, prefer: int | None = None) -> None:
        """Re-read the servable artifacts, keeping the current choice (or choosing ``prefer``,
        else the newest servable GGUF: the one that serves on any machine)."""
        current = prefer if prefer is not None else self.artifact_combo.currentData()
        self.artifact_combo.blockSignals(True)
        self.artifact_combo.clear()
        lora = self.lora_combo.currentData()
        self.lora_combo.clear()
        self.lora_combo.addItem("none", None)
        newest_gguf: int | None = None
        for a in self.ctx.catalog.artifacts():
            if a.state == ArtifactState.READY and a.metadata.get("format") == "lora-gguf":
                self.lora_combo.addItem(a.ref, a.ref)
            if servable(a):
                self.artifact_combo.addItem(f"{a.ref}  ({a.kind}, #{a.id})", a.id)
                self.artifact_combo.setItemData(self.artifact_combo.count() - 1, a.kind,
                                                Qt.ItemDataRole.UserRole + 1)
                if a.kind == "gguf" and (newest_gguf is None or a.id > newest_gguf):
                    newest_gguf = a.id
        self.artifact_combo.blockSignals(False)
        self.lora_combo.setCurrentIndex(max(0, self.lora_combo.findData(lora)))
        index = self.artifact_combo.findData(current) if current is not None else -1
        if index < 0 and newest_gguf is not None:
            index = self.artifact_combo.findData(newest_gguf)
        self.artifact_combo.setCurrentIndex(max(index, 0))
        self._on_artifact_changed(self.artifact_combo.currentIndex())

    def select_artifact(self, artifact_id: int) -> bool:
        """Preselect an artifact (re-reading the catalog if needed)."""
        index = self.artifact_combo.findData(artifact_id)
        if index < 0:
            self.reload_artifacts()
            index = self.artifact_combo.findData(artifact_id)
        if index < 0:
            return False
        self.artifact_combo.setCurrentIndex(index)
        self.start_button.setFocus()
        return True

    def form_request(self) -> DeployRequest | None:
        index = self.artifact_combo.currentIndex()
        if index < 0:
            return None
        text = self.artifact_combo.itemText(index)
        return DeployRequest.from_options(
            int(self.artifact_combo.itemData(index)), artifact_ref=text.split("  (")[0],
            api_key=self.api_key_edit.text().strip(), **self.serve_values())

    def generate_api_key(self) -> None:
        import secrets

        self.api_key_edit.setText(secrets.token_urlsafe(24))
        self.api_key_edit.setEchoMode(QLineEdit.EchoMode.Normal)

    def set_hardware(self, hw: Hardware) -> None:
        self.hardware = hw
        self._defaults_for = self.artifact_combo.currentData()
        self.apply_defaults()

    def apply_defaults(self) -> None:
        """Fill the form with what suits the chosen model on this machine, and say why."""
        artifact_id = self.artifact_combo.currentData()
        if artifact_id is None or self.hardware is None:
            self.defaults_label.setText("" if artifact_id is None else "Checking this machine…")
            return
        artifact = self.current_artifact()
        if artifact is None:
            return
        options, reasons = suggest_options(artifact, self.hardware)
        suggested = {name: getattr(options, name) for name in SUGGESTED_FIELDS}
        for form in (self.main_form, self.tuning_form, self.advanced_form):
            form.set_values(suggested)
        self.defaults_label.setText("Suggested for this model and machine: " + "; ".join(reasons)
                                    + ".")

    def use_suggested_template(self) -> None:
        if self._suggested_template:
            self.main_form.set_value("chat_template", self._suggested_template)

    # ---- slots ----------------------------------------------------------------------------

    def _show_template_warning(self, artifact: Artifact | None) -> None:
        """Say so when the model has no chat template, with the suggested one and why."""
        self._suggested_template = None
        if artifact is None or not lacks_chat_template(artifact):
            self.template_warning.hide()
            self.use_template_button.hide()
            return
        name, reason = template_advice(artifact)
        text = ("This model has no chat template: a chat request cannot be turned into its "
                "prompt. ")
        if name and self.template_combo is not None:
            text += f"Suggested template: {name} ({reason})"
            self._suggested_template = name
        elif self.template_combo is not None:
            text += f"Choose one under Chat template. {reason}"
        else:
            text += reason
        text += " Without one, use plain completion (the Playground's Completion mode, " \
                "/v1/completions)."
        self.template_warning.setText(text)
        self.template_warning.show()
        self.use_template_button.setVisible(self._suggested_template is not None)
        if self._suggested_template:
            self.use_template_button.setText(f"Use {self._suggested_template}")

    def _on_artifact_changed(self, index: int) -> None:
        kind = self.artifact_combo.itemData(index, Qt.ItemDataRole.UserRole + 1)
        engine = ENGINE_FOR_KIND.get(kind or "")
        if engine:
            self.engine_combo.setCurrentText(engine)
        self.start_button.setEnabled(index >= 0)
        chosen = self.artifact_combo.itemData(index) if index >= 0 else None
        if chosen != self._template_for:  # another model: its own template again
            self._template_for = chosen
            if self.template_combo is not None:
                self.main_form.set_value("chat_template", None)
            self._show_template_warning(self.current_artifact() if index >= 0 else None)
        if index >= 0 and self.artifact_combo.itemData(index) != self._defaults_for:
            self._defaults_for = self.artifact_combo.itemData(index)
            self.apply_defaults()
        self._on_engine_changed()
        self.sig_artifact_changed.emit(self.artifact_combo.currentData())

    def _on_engine_changed(self, *_: object) -> None:
        self.placement.show_engine(self.engine())
        self.update_estimate()

    def _on_host_changed(self, host: str) -> None:
        from llmops_desktop.netaddr import is_loopback

        local = not host.strip() or is_loopback(host.strip())
        self.api_key_edit.setPlaceholderText("none (this machine only)" if local else
                                             "required off this machine: press Generate")

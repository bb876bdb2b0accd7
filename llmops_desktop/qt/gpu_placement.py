"""The "GPU placement" part of the New deployment form: which GPUs, and how the model is
spread over them, with each GPU's free memory and the estimate for the chosen placement.

The fields are :class:`~llmops_desktop.serving.config.ServeOptions`' placement fields (the
flags ``--gpus``, ``--tensor-split``, ``--split-mode``, ``--device-map``, ``--max-memory``,
``--gpu-memory-utilization``); only those the chosen engine uses are shown. The GPUs are
read through NVML (:func:`llmops_desktop.monitor.gpu.diagnose`) on a worker thread; the
estimate is the gateway's (:func:`llmops_desktop.gateway.pool.memory_need`), which is the
Deployments page's own suggestion's.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from llmops_desktop.catalog import Artifact
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.qt.formatting import human_size
from llmops_desktop.qt.forms import Override, SpecForm, muted_label
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.serving.config import ServeOptions

PLACEMENT_FIELDS = ("gpus", "tensor_split", "split_mode", "device_map", "max_memory",
                    "gpu_memory_utilization")
ENGINE_FIELDS = {"tensor_split": "llama.cpp", "split_mode": "llama.cpp",
                 "device_map": "torch", "max_memory": "torch", "gpu_memory_utilization": "vllm"}
VLLM_DEFAULT_SHARE = 0.9  # vLLM's own --gpu-memory-utilization default
WARN_COLOR = "#c77c02"

OVERRIDES = {
    "gpus": Override(none_text="every GPU"),
    "tensor_split": Override(none_text="by free memory"),
    "split_mode": Override(none_text="by layer"),
    "device_map": Override(none_text="none: the whole model on Device"),
    "max_memory": Override(none_text="as much as fits"),
    "gpu_memory_utilization": Override(none_text="vLLM's 0.9", step=0.05),
}


def read_gpus() -> tuple[Any, tuple[bool, str]]:
    """NVML's view of the GPUs, and whether vLLM can run here (both can take a moment)."""
    from llmops_desktop.monitor.gpu import diagnose
    from llmops_desktop.serving.engines.vllm_engine import vllm_available

    return diagnose(), vllm_available()


def placement_text(artifact: Artifact | None, options: ServeOptions,
                   diagnosis: Any) -> tuple[str, bool]:
    """What the chosen placement would hold on each GPU, and whether it looks too tight."""
    if artifact is None:
        return "", False
    from llmops_desktop.gateway.pool import memory_need

    try:
        placement = options.placement()
    except InvalidInputError as exc:
        return str(exc), True
    need = memory_need(artifact, options)
    head = f"This model needs about {human_size(need)} with these settings"
    engine = options.engine or ""
    if engine == "llama.cpp" and options.gpu_layers == 0:
        return head + ": all in RAM (GPU layers is 0).", False
    if engine == "torch" and not options.device_map and (options.device or "") == "cpu":
        return head + ": all in RAM (device cpu).", False
    devices = {d.index: d for d in (diagnosis.devices if diagnosis is not None else ())}
    if diagnosis is not None and not diagnosis.available:
        if placement.gpus:
            return (f"{head}. GPUs {placement.visible_devices}: no CUDA GPU found here, so "
                    "Start would be refused; leave GPUs empty to serve on the CPU."), True
        return head + ".", False
    missing = [i for i in placement.gpus if devices and i not in devices]
    if missing:
        return f"There is no GPU {', '.join(map(str, missing))} here.", True
    parts, tight = [], False
    for index, share in placement.shares(len(devices)):
        free = devices[index].memory_free if index in devices else None
        if engine == "vllm":
            total = devices[index].memory_total if index in devices else 0
            take = total * (options.gpu_memory_utilization or VLLM_DEFAULT_SHARE)
        else:
            take = need * share
        if free is not None and take > free:
            tight = True
        parts.append(f"GPU {index}: {human_size(take)}" + (f" of {human_size(free)} free"
                                                        if free is not None else ""))
    if engine == "vllm":
        head += "; vLLM reserves its share of each GPU for weights and KV cache"
    text = head + (" — " + "; ".join(parts) if parts else "") + "."
    if tight:
        text += " That is more than a GPU has free: choose more GPUs or a shorter context."
    return text, tight


class GpuPlacementBox(QGroupBox):
    """GPU choice and spread for a deployment, with free memory and the estimate."""

    sig_vllm = Signal(bool, str)
    """Whether vLLM can run here, and why not (once the GPUs have been read)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("GPU placement", parent)
        self.diagnosis: Any = None
        self.form = SpecForm(ServeOptions, names=PLACEMENT_FIELDS, overrides=OVERRIDES)
        self.gpu_label = muted_label("Reading the GPUs…")
        self.gpu_label.setObjectName("gpu_list")
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("placement_estimate")
        self.estimate_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.gpu_label)
        layout.addWidget(self.form)
        layout.addWidget(self.estimate_label)
        self.show_engine("llama.cpp")

    def read(self) -> None:
        """Read the GPUs (and vLLM's availability) on a worker thread."""
        run_in_thread(read_gpus, self.set_gpus, self._on_read_error, receiver=self)

    def values(self) -> dict[str, Any]:
        return self.form.values()

    def set_gpus(self, result: tuple[Any, tuple[bool, str]]) -> None:
        diagnosis, (vllm_ok, vllm_reason) = result
        self.diagnosis = diagnosis
        if diagnosis.available:
            lines = [f"GPU {d.index} · {d.name}: {human_size(d.memory_free)} free of "
                     f"{human_size(d.memory_total)}" if not d.error else d.error
                     for d in diagnosis.devices]
            self.gpu_label.setText("\n".join(lines))
        else:
            self.gpu_label.setText(f"No CUDA GPU found: {diagnosis.message}")
        self.sig_vllm.emit(vllm_ok, vllm_reason)

    def _on_read_error(self, exc: BaseException) -> None:
        self.gpu_label.setText(f"The GPUs could not be read: {exc}")
        self.sig_vllm.emit(False, f"The GPUs could not be read: {exc}")

    def show_engine(self, engine: str) -> None:
        """Show the rows the engine uses (the others are cleared: it would refuse them)."""
        for name, used_by in ENGINE_FIELDS.items():
            visible = engine == used_by
            if not visible:
                self.form.set_value(name, None)
            self.form.set_row_visible(name, visible)

    def update_estimate(self, artifact: Artifact | None, options: ServeOptions) -> None:
        text, tight = placement_text(artifact, options, self.diagnosis)
        self.estimate_label.setText(text)
        self.estimate_label.setStyleSheet(f"color: {WARN_COLOR};" if tight else "")

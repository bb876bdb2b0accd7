"""The Quantize dialog's list of targets: what each costs, and which can be ticked, and why.

Rows come from the core's tables (``GGUF_TARGETS``, ``BNB_MODES``); whether a target
is allowed for this parent is ``plan_targets``' decision, never re-implemented here.
Estimates are ``estimate`` on the parent's metadata until :func:`probe` has read the
parent's tensor layout (:mod:`llmops_desktop.quantize.size_estimate`: per tensor, as
llama.cpp quantizes). :func:`probe` gathers what needs the disk (free space, the tensor
count and layout, bitsandbytes support); the dialog runs it in a
thread and hands the answer to :meth:`TargetList.apply_probe`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from llmops_desktop.catalog import Artifact
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.qt.formatting import human_size
from llmops_desktop.quantize.targets import BNB_MODES, GGUF_TARGETS, estimate
from llmops_desktop.quantize.task import plan_targets

CONTEXT = 4096  # tokens the "memory to run" column assumes (capped by the model's own)
COL_TARGET, COL_BITS, COL_SIZE, COL_MEMORY, COL_NOTE = range(5)
BNB_DESCRIPTIONS = {
    "bnb-nf4": "4-bit NormalFloat checkpoint for the torch engine",
    "bnb-fp4": "4-bit float checkpoint for the torch engine",
    "bnb-int8": "8-bit LLM.int8 checkpoint for the torch engine",
}
NO_BNB = "bitsandbytes support is not available"
CHECKING = "checking whether this machine can…"
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def probe(parent: Artifact, folder: Path) -> dict[str, Any]:
    """What the dialog needs from the disk (run it in a thread): free space where the job
    writes, the parent's tensor count (for the converter's progress bar) and, for a
    Hugging Face parent, why each bitsandbytes mode cannot run here (None if it can)."""
    out: dict[str, Any] = {"free": None, "tensors": None, "bnb": {}, "layout": None}
    if parent.kind in ("gguf", "hf"):
        from llmops_desktop.quantize.size_estimate import read_layout

        try:
            out["layout"] = read_layout(parent.kind, parent.path)
        except Exception:  # noqa: BLE001 - the estimate stays the rough one, and says so
            pass
    where = folder
    while not where.exists() and where.parent != where:
        where = where.parent
    try:
        out["free"] = shutil.disk_usage(where).free
    except OSError:
        pass
    if parent.kind == "gguf":
        out["tensors"] = parent.metadata.get("tensors") or None
    elif parent.kind == "hf":
        from llmops_desktop.formats.safetensors_meta import read_safetensors_info

        try:
            out["tensors"] = sum(read_safetensors_info(p).tensors
                                 for p in sorted(parent.path.glob("*.safetensors"))) or None
        except (OSError, ValueError):
            pass
        try:
            from llmops_desktop.quantize.bnb import bnb_support
        except ImportError:
            out["bnb"] = {mode: NO_BNB for mode in BNB_MODES}
        else:
            for mode in BNB_MODES:
                try:
                    out["bnb"][mode] = bnb_support(parent.path, mode)
                except Exception as exc:  # noqa: BLE001 - shown as the reason
                    out["bnb"][mode] = f"{NO_BNB}: {exc}"
    return out


def needs_intermediate(parent: Artifact, targets: list[str]) -> bool:
    """Whether the job writes an F16 GGUF first (an HF parent going to a k-quant)."""
    return parent.kind == "hf" and any(
        t in GGUF_TARGETS and (not GGUF_TARGETS[t].convert_outtype or t == "F16")
        for t in targets)


class TargetList(QTreeWidget):
    """Checkable targets with bits per weight, estimated size, memory to run and a note."""

    sig_checked_changed = Signal()
    """The user ticked or unticked a target."""

    def __init__(self, artifact: Artifact, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.artifact = artifact
        self._items: dict[str, QTreeWidgetItem] = {}
        self._sizes: dict[str, float] = {}  # per-tensor estimates, once the probe read them
        self.layout: Any = None
        self.setHeaderLabels(["Target", "Bits/weight", "Est. size", "Memory to run", "Notes"])
        tokens = int(estimate(artifact.metadata, "Q8_0", CONTEXT)["context"])
        tips = ["Tick every variant to make", "Typical bits per weight of the type",
                "Estimated file size", f"Estimated memory to run it: the weights, the KV cache "
                f"at {tokens:,} tokens and llama.cpp's compute buffer", ""]
        for column, tip in enumerate(tips):
            self.headerItem().setToolTip(column, tip)
            if column in (COL_BITS, COL_SIZE, COL_MEMORY):
                self.headerItem().setTextAlignment(column, _RIGHT)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QTreeWidget.SelectionMode.NoSelection)
        header = self.header()
        header.setStretchLastSection(True)
        for column in (COL_TARGET, COL_BITS, COL_SIZE, COL_MEMORY):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self._add_group("GGUF — llama.cpp (serve with the llama.cpp engine)")
        for name, target in GGUF_TARGETS.items():
            self._add_target(name, target.bits_per_weight, target.description)
        if artifact.kind == "hf":
            self._add_group("bitsandbytes — Hugging Face checkpoint for the torch engine")
            for mode in BNB_MODES:
                item = self._add_target(mode, estimate({}, mode)["bits_per_weight"],
                                        BNB_DESCRIPTIONS[mode])
                self._set_unavailable(item, CHECKING)
        self.itemChanged.connect(self._on_item_changed)
        self.setCurrentItem(None)  # no focus frame on the first group until the user tabs in
        self.setMinimumHeight(250)

    # ---- public ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._items)

    def item_of(self, name: str) -> QTreeWidgetItem:
        return self._items[name]

    def is_available(self, name: str) -> bool:
        return bool(self._items[name].flags() & Qt.ItemFlag.ItemIsEnabled)

    def set_checked(self, names: list[str], checked: bool = True) -> None:
        """Tick (or untick) targets, as a click on their boxes would."""
        state = Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
        for name in names:
            if self.is_available(name):
                self._items[name].setCheckState(COL_TARGET, state)

    def checked(self) -> list[str]:
        return [name for name, item in self._items.items() if self.is_available(name)
                and item.checkState(COL_TARGET) == Qt.CheckState.Checked]

    def estimates(self) -> dict[str, tuple[str, str]]:
        """Target -> (estimated size, memory to run) as shown."""
        return {n: (i.text(COL_SIZE), i.text(COL_MEMORY)) for n, i in self._items.items()}

    def size_of(self, name: str) -> float:
        """The estimated file size of a target (per tensor once the layout is known)."""
        return self._sizes.get(name, estimate(self.artifact.metadata, name, CONTEXT)["size_bytes"])

    def memory_of(self, name: str) -> float:
        est = estimate(self.artifact.metadata, name, CONTEXT)
        return est["memory_bytes"] - est["size_bytes"] + self.size_of(name)

    def apply_layout(self, layout: Any) -> None:
        """Sizes from the parent's tensors (which stay F32, which fall back to another type,
        the metadata), instead of the parameter count times typical bits per weight."""
        if layout is None:
            return
        from llmops_desktop.quantize.size_estimate import estimate_gguf_bytes

        self.layout = layout
        for name in GGUF_TARGETS:
            size, types = estimate_gguf_bytes(layout, name)
            self._sizes[name] = size
            item = self._items[name]
            item.setText(COL_SIZE, human_size(size))
            item.setText(COL_MEMORY, human_size(self.memory_of(name)))
            mix = ", ".join(f"{n} {k}" for k, n in sorted(types.items(), key=lambda kv: -kv[1]))
            item.setToolTip(COL_SIZE, f"From the {len(layout.tensors)} tensors in the parent's "
                                      f"{layout.source}: {mix} tensors, plus "
                                      f"{human_size(layout.metadata_bytes)} of metadata "
                                      "(vocabulary, settings)")

    def apply_bnb_reasons(self, reasons: dict[str, str | None]) -> None:
        """Enable the bitsandbytes modes this machine can do; show why for the others."""
        self.blockSignals(True)
        for mode in BNB_MODES:
            item = self._items.get(mode)
            if item is None:
                continue
            reason = reasons.get(mode, NO_BNB)
            if reason is None:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEnabled)
                item.setCheckState(COL_TARGET, Qt.CheckState.Unchecked)
                item.setText(COL_NOTE, BNB_DESCRIPTIONS[mode])
                for column in range(item.columnCount()):
                    item.setToolTip(column, "")
            else:
                self._set_unavailable(item, reason)
        self.blockSignals(False)

    # ---- building -------------------------------------------------------------------------

    def _add_group(self, title: str) -> None:
        item = QTreeWidgetItem([title])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        font = item.font(0)
        font.setBold(True)
        item.setFont(0, font)
        self.addTopLevelItem(item)
        item.setFirstColumnSpanned(True)

    def _add_target(self, name: str, bits: float, description: str) -> QTreeWidgetItem:
        est = estimate(self.artifact.metadata, name, CONTEXT)
        item = QTreeWidgetItem([name, f"{bits:.2f}", human_size(est["size_bytes"]),
                                human_size(est["memory_bytes"]), description])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(COL_TARGET, Qt.CheckState.Unchecked)
        for column in (COL_BITS, COL_SIZE, COL_MEMORY):
            item.setTextAlignment(column, _RIGHT)
        item.setToolTip(COL_NOTE, description)
        note, enabled = self._note_for(name, description)
        item.setText(COL_NOTE, note)
        if not enabled:
            self._set_unavailable(item, note)
        self.addTopLevelItem(item)
        self._items[name] = item
        return item

    def _note_for(self, name: str, description: str) -> tuple[str, bool]:
        """The note a target row shows, and whether it can be ticked (the core decides)."""
        try:
            plan_targets(self.artifact, [name])
        except InvalidInputError:
            try:
                plan_targets(self.artifact, [name], force=True)
            except InvalidInputError as exc:
                return str(exc), False
            have = str(self.artifact.metadata.get("quantization", "")).upper()
            return f"more bits than the parent's {have}; asks you to confirm", True
        return description, True

    @staticmethod
    def _set_unavailable(item: QTreeWidgetItem, reason: str) -> None:
        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
        item.setData(COL_TARGET, Qt.ItemDataRole.CheckStateRole, None)
        item.setText(COL_NOTE, reason)
        for column in range(item.columnCount()):
            item.setToolTip(column, reason)

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == COL_TARGET:
            self.sig_checked_changed.emit()

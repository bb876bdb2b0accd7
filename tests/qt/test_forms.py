"""The one form builder: forms come from the same field specification as the CLI's flags,
labels read as a person writes them, every field refreshes what depends on it, and the
mouse wheel never changes a value the user did not focus."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea

from llmops_desktop.fields import field_specs
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.import_request import ImportRequest
from llmops_desktop.qt.forms import SpecForm
from llmops_desktop.quantize.task import QuantizeRequest
from llmops_desktop.settings import Settings


@pytest.mark.parametrize("cls", [Settings, FinetuneOptions, QuantizeRequest, ImportRequest])
def test_form_fields_are_the_spec_fields_with_their_descriptions(qtbot, cls) -> None:
    form = SpecForm(cls)
    qtbot.addWidget(form)
    exposed = [s for s in field_specs(cls) if s.exposed]
    assert list(form.editors) == [s.name for s in exposed]
    labels = {w.text() for w in form.findChildren(QLabel)}
    for s in exposed:
        assert form.input(s.name).toolTip().startswith(s.description)
        assert s.label in labels or getattr(form.input(s.name), "text", lambda: "")() == s.label
    # A fresh form shows the defaults, read back as typed (a check box says yes or no).
    defaults = {s.name: bool(s.default) if s.type is bool else s.default for s in exposed}
    assert form.values() == defaults


def test_finetune_labels_read_as_a_person_writes_them(qtbot, window) -> None:
    page = window.show_page("finetune")
    labels = {w.text() for w in page.form.findChildren(QLabel)}
    assert {"Learning rate", "LoRA rank", "Gradient accumulation", "Max steps",
            "Validation fraction"} <= labels
    assert not {"Lr", "R", "Grad accum"} & labels


@pytest.mark.parametrize("name, value", [("max_steps", 40), ("validation", 0.2), ("r", 8)])
def test_every_finetune_field_refreshes_the_memory_estimate(qtbot, window, name, value) -> None:
    page = window.show_page("finetune")
    qtbot.waitUntil(lambda: not page._estimate_timer.isActive(), timeout=5_000)
    page._inputs[name].setValue(value)  # as the user types it
    assert page._estimate_timer.isActive(), f"{name} did not schedule a new estimate"
    assert page.options().to_dict()[name] == value


def _wheel(widget) -> None:
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(QPoint(0, 0))), QPoint(0, 0),
                        QPoint(0, 120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_and_changes_no_unfocused_value(qtbot) -> None:
    form = SpecForm(Settings)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(form)
    scroll.resize(400, 200)
    qtbot.addWidget(scroll)
    scroll.show()
    qtbot.waitExposed(scroll)
    spin, combo = form.input("mirror_port"), form.input("import_mode")
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus
    assert combo.focusPolicy() == Qt.FocusPolicy.StrongFocus
    before = form.values()
    _wheel(spin)
    _wheel(combo)
    assert form.values() == before
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=2_000)
    _wheel(spin)  # focused: the wheel is the user's choice
    assert form.value("mirror_port") == before["mirror_port"] + 1

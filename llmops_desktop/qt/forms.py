"""One form builder for every typed record: settings, options and job requests.

:class:`SpecForm` makes one editor per field of a dataclass declared with
``llmops_desktop.fields.spec`` (the same list the CLI's flags come from): bool → check
box, choices → combo box, int → spin box with its bounds, float → double spin box, text
and lists → line edit. The label is the field's label, the tooltip its description.
What a page needs beyond that goes in an :class:`Override` (a Browse button, what "not
set" reads as, friendlier choice texts), never in a branch on a field's name here.

Spin and combo boxes take the mouse wheel only once focused, so scrolling a long form
never changes a value by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.fields import FieldSpec, field_specs

INT_LIMIT = 2**31 - 1


class _WheelOnlyWhenFocused:
    """Mixin: ignore the wheel unless focused (the scroll area gets it instead)."""

    def _guard_wheel(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # type: ignore[attr-defined]

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt's name
        if not self.hasFocus():  # type: ignore[attr-defined]
            event.ignore()
            return
        super().wheelEvent(event)  # type: ignore[misc]


class SpinBox(_WheelOnlyWhenFocused, QSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_wheel()


class DoubleSpinBox(_WheelOnlyWhenFocused, QDoubleSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_wheel()


class ComboBox(_WheelOnlyWhenFocused, QComboBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_wheel()


@dataclass
class Editor:
    """One field's editor: the row's widget, its input, and how to read and write it."""

    widget: QWidget  # what the form row shows (the input, or the input with a button)
    input: QWidget  # the input itself: tooltips, object names, tests
    get: Callable[[], Any]
    set: Callable[[Any], None]
    changed: Any  # the input's change signal


EditorFactory = Callable[[FieldSpec], Editor]


@dataclass(frozen=True)
class Override:
    """A field's special case: its own editor, or how the standard one reads."""

    editor: EditorFactory | None = None
    none_text: str | None = None  # what "not set" (None, or empty text) is shown as
    min_text: str | None = None  # what the lowest value means (port 0: "free port")
    choice_texts: Mapping[str, str] | None = None  # choice -> the text the combo shows
    suggestions: tuple[str, ...] = ()  # text: an editable combo offering these
    decimals: int | None = None
    step: float | None = None


def muted_label(text: str) -> QLabel:
    """A small help line in the palette's muted colour (reads on light and dark themes)."""
    label = QLabel(text)
    label.setWordWrap(True)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 0.9)
    label.setFont(font)
    muted = label.palette().color(QPalette.ColorRole.PlaceholderText)
    label.setStyleSheet(f"color: {muted.name()};")
    return label


def make_editor(spec: FieldSpec, override: Override | None = None) -> Editor:
    """The standard editor for ``spec`` (or the override's own)."""
    o = override or Override()
    if o.editor is not None:
        return o.editor(spec)
    if spec.type is bool:
        box = QCheckBox(spec.label)
        return Editor(box, box, box.isChecked, lambda v: box.setChecked(bool(v)), box.toggled)
    if spec.choices:
        combo = ComboBox()
        if spec.optional:
            combo.addItem(o.none_text or "default", None)
        for choice in spec.choices:
            combo.addItem((o.choice_texts or {}).get(choice, choice), choice)

        def set_choice(value: Any) -> None:  # a disabled choice (not possible here) is kept out
            index = max(0, combo.findData(value))
            item = combo.model().item(index)  # type: ignore[attr-defined]
            if item is None or item.isEnabled():
                combo.setCurrentIndex(index)
        return Editor(combo, combo, combo.currentData, set_choice, combo.currentIndexChanged)
    if spec.type in (int, float):
        return _number_editor(spec, o)
    if o.suggestions:
        return _suggestions_editor(spec, o)
    line = QLineEdit()
    line.setClearButtonEnabled(True)
    if o.none_text:
        line.setPlaceholderText(o.none_text)
    if spec.type is tuple:
        return Editor(line, line, lambda: tuple(x.strip() for x in line.text().split(",")
                                                if x.strip()),
                      lambda v: line.setText(", ".join(v or ())), line.textChanged)

    def get_text() -> str | None:
        text = line.text().strip()
        return None if spec.optional and not text else text
    return Editor(line, line, get_text, lambda v: line.setText("" if v is None else str(v)),
                  line.textChanged)


def _number_editor(spec: FieldSpec, o: Override) -> Editor:
    is_int = spec.type is int
    spin: QSpinBox | QDoubleSpinBox
    if is_int:
        spin = SpinBox()
        low = int(spec.minimum) if spec.minimum is not None else -INT_LIMIT
        high = int(spec.maximum) if spec.maximum is not None else INT_LIMIT
    else:
        spin = DoubleSpinBox()
        default = spec.default if isinstance(spec.default, float) else 1.0
        spin.setDecimals(o.decimals or (6 if 0 < abs(default) < 0.01 else 3))
        spin.setSingleStep(o.step or (0.05 if abs(default) < 1 else 1.0))
        low = spec.minimum if spec.minimum is not None else -1e12
        high = spec.maximum if spec.maximum is not None else 1e12
    if o.step and is_int:
        spin.setSingleStep(int(o.step))
    if o.min_text:
        spin.setSpecialValueText(o.min_text)
    unset = None
    if spec.optional:  # the lowest value reads as "not set": one below the minimum for ints
        unset = low - 1 if is_int else low
        spin.setSpecialValueText(o.none_text or "default")
    spin.setRange(min(low, unset) if unset is not None else low, high)

    def get_number() -> Any:
        value = spin.value()
        if unset is not None and value == unset:
            return None
        return int(value) if is_int else float(value)

    def set_number(value: Any) -> None:
        spin.setValue(spin.minimum() if value is None else value)
    return Editor(spin, spin, get_number, set_number, spin.valueChanged)


def _suggestions_editor(spec: FieldSpec, o: Override) -> Editor:
    """Free text with the usual values offered (an address, a device)."""
    combo = ComboBox()
    combo.setEditable(True)
    combo.addItems(list(o.suggestions))
    if o.none_text:
        combo.lineEdit().setPlaceholderText(o.none_text)

    def get_text() -> str | None:
        text = combo.currentText().strip()
        if not text:
            return None if spec.optional else spec.default
        return text
    return Editor(combo, combo, get_text,
                  lambda v: combo.setCurrentText("" if v is None else str(v)),
                  combo.currentTextChanged)


def path_override(*, folder: bool, title: str, filter: str = "All files (*)",
                  placeholder: str = "") -> Override:
    """A line edit with a Browse… button (a folder, or a file to open)."""

    def factory(spec: FieldSpec) -> Editor:
        from llmops_desktop.qt.context import icon

        line = QLineEdit()
        line.setClearButtonEnabled(True)
        line.setPlaceholderText(placeholder)
        browse = QPushButton(icon("folder" if folder else "file"), "Browse…")

        def on_browse() -> None:
            start = line.text() or str(Path.home())
            if folder:
                path = QFileDialog.getExistingDirectory(line, title, start)
            else:
                path, _ = QFileDialog.getOpenFileName(line, title, start, filter)
            if path:
                line.setText(path)
        browse.clicked.connect(on_browse)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(line, 1)
        layout.addWidget(browse)

        def get_text() -> str | None:
            text = line.text().strip()
            return None if spec.optional and not text else text
        return Editor(row, line, get_text,
                      lambda v: line.setText("" if v is None else str(v)), line.textChanged)
    return Override(editor=factory)


class SpecForm(QWidget):
    """A form over the specified fields of a dataclass (all, or ``names`` in that order)."""

    sig_changed = Signal()
    """The user (or code) changed a value."""

    def __init__(self, cls: type, *, names: Iterable[str] | None = None,
                 overrides: Mapping[str, Override] | None = None, grouped: bool = False,
                 help_lines: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        specs = {s.name: s for s in field_specs(cls)}
        chosen = list(names) if names is not None else [n for n, s in specs.items()
                                                        if s.exposed]
        self.specs = {name: specs[name] for name in chosen}
        self.editors: dict[str, Editor] = {}
        self._forms: dict[str, QFormLayout] = {}
        self._rows: dict[str, tuple[QFormLayout, QWidget]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for name, spec in self.specs.items():
            group = spec.group if grouped else ""
            form = self._forms.get(group)
            if form is None:
                holder: QWidget = QGroupBox(group) if grouped else QWidget()
                form = QFormLayout(holder)
                form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                if not grouped:
                    form.setContentsMargins(0, 0, 0, 0)
                self._forms[group] = form
                layout.addWidget(holder)
            editor = make_editor(spec, (overrides or {}).get(name))
            editor.input.setObjectName(f"field_{name}")
            tip = spec.description + (" (takes effect after a restart)" if spec.restart else "")
            editor.input.setToolTip(tip)
            editor.changed.connect(self._on_edited)
            self.editors[name] = editor
            label = QLabel("" if spec.type is bool and editor.input is editor.widget
                           and isinstance(editor.input, QCheckBox) else spec.label)
            label.setToolTip(tip)
            row: QWidget = editor.widget
            if help_lines:
                row = QWidget()
                column = QVBoxLayout(row)
                column.setContentsMargins(0, 0, 0, 6)
                column.setSpacing(2)
                column.addWidget(editor.widget)
                column.addWidget(muted_label(tip))
            form.addRow(label, row)
            self._rows[name] = (form, row)
        self.set_defaults()

    # ---- values ----------------------------------------------------------------------------

    def input(self, name: str) -> QWidget:
        return self.editors[name].input

    def value(self, name: str) -> Any:
        return self.editors[name].get()

    def values(self) -> dict[str, Any]:
        return {name: editor.get() for name, editor in self.editors.items()}

    def set_value(self, name: str, value: Any) -> None:
        editor = self.editors.get(name)
        if editor is not None:
            editor.set(value)

    def set_values(self, values: Any) -> None:
        """Show ``values``: a mapping, or a dataclass instance (its fields by name)."""
        if is_dataclass(values) and not isinstance(values, type):
            values = {f.name: getattr(values, f.name) for f in fields(values)}
        for name, value in values.items():
            self.set_value(name, value)

    def set_defaults(self) -> None:
        self.set_values({s.name: s.default for s in self.specs.values() if not s.required})

    # ---- layout ----------------------------------------------------------------------------

    def group_layout(self, group: str) -> QFormLayout | None:
        """The form of one group (grouped forms), to add a page's own rows to."""
        return self._forms.get(group)

    def set_row_visible(self, name: str, visible: bool) -> None:
        form, row = self._rows[name]
        form.setRowVisible(row, visible)

    def _on_edited(self, *_: object) -> None:
        self.sig_changed.emit()

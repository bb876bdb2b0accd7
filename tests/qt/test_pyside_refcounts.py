"""A long session must not crash: the Qt binding must keep Python's reference counts.

PySide6 6.12.0 (on Python 3.11) loses a reference to ``True`` on every signal emitted from
Python and one to ``None`` on every Qt call that returns nothing, so after some thousands
of them the app aborts ("Fatal Python error: bool_dealloc"); installers/constraints.txt
pins a version that does not.
"""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel


class _Emitter(QObject):
    sig = Signal(int)


def test_signals_and_setters_keep_reference_counts(qtbot) -> None:
    emitter, label = _Emitter(), QLabel()
    emitter.sig.connect(lambda _: None)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(2000):
        emitter.sig.emit(i)
        label.setText(str(i))
    lost_true = true_before - sys.getrefcount(True)
    lost_none = none_before - sys.getrefcount(None)
    assert lost_true < 100 and lost_none < 100, (
        f"this PySide6 loses references ({lost_true} to True, {lost_none} to None in 2000 "
        "calls): a long session will abort; install the version in installers/constraints.txt")

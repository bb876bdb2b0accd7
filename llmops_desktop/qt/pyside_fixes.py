"""A guard against PySide6 6.12.0's reference-count bugs on Python < 3.12.

Under PySide6 6.12.0 on Python 3.11 (seen here; 6.11.3 does not do it), every
``signal.emit(...)`` made from Python hands back ``True`` without taking a reference to
it, and methods that return nothing (``QLabel.setText``, ``processEvents``, …) hand back
``None`` the same way: each call costs ``True`` or ``None`` one reference. Python 3.12
made both immortal, so there it is harmless; on 3.10 and 3.11 a count reaches zero after
some thousands of calls and the interpreter aborts ("Fatal Python error: bool_dealloc" or
"none_dealloc"). Any long GUI session gets there; live charts (pyqtgraph emits signals
and sets ranges on every redraw) got there within seconds.

:func:`guard_bool_refcounts` measures whether this PySide has the bug and, only then,
gives ``True``, ``False`` and ``None`` 2**40 extra references once. They are never
freed in a healthy process, so the extra references change nothing else. The real fix
is a PySide6 without the bug (or Python 3.12+).
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_checked = False
EXTRA_REFERENCES = 1 << 40


class _Probe(QObject):
    sig_probe = Signal()
    """Emitted only to measure the bug."""


def refcounts_leak() -> bool:
    """Whether a Python-side emit, or a method returning nothing, loses a reference."""
    probe = _Probe()
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(16):
        probe.sig_probe.emit()
        probe.setObjectName("probe")
    return (sys.getrefcount(True) < true_before - 8 or
            sys.getrefcount(None) < none_before - 8)


def guard_bool_refcounts() -> bool:
    """Apply the guard once per process where it is needed; True if it was applied."""
    global _checked
    if _checked:
        return False
    _checked = True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if not refcounts_leak():
        return False
    for immortal in (True, False, None):
        ctypes.c_ssize_t.from_address(id(immortal)).value += EXTRA_REFERENCES
    return True

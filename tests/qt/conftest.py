"""Fixtures of the GUI tests: a window on the test's home, and the demo GGUF imported."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot, home):
    from tests.qt.windows import dispose, open_window

    win = open_window(qtbot, home)
    yield win
    dispose(win)


@pytest.fixture
def gguf_artifact(catalog, demo_gguf) -> int:
    """The demo model's GGUF, imported into the test's catalog (its id)."""
    from tests.mirror_fixtures import import_artifact

    return import_artifact(catalog, demo_gguf, "demo-gguf").id

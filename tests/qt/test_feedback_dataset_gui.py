"""The Datasets page's "From feedback…": rated replies become a preference dataset version
from the window, with the count shown before anything is written (#19 item 3)."""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt

from llmops_desktop.datasets.store import resolve_version
from llmops_desktop.qt.feedback_dataset_dialog import FeedbackDatasetDialog
from tests.test_feedback_loop import _assert_sample_pairs, _rate_sample


def test_feedback_becomes_a_preference_dataset_from_the_datasets_page(qtbot, window, catalog):
    ids = _rate_sample(catalog)  # two pairs, and a liked reply with no disliked twin

    page = window.show_page("datasets")
    qtbot.mouseClick(page.feedback_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.findChild(FeedbackDatasetDialog) is not None, timeout=5000)
    dialog = page.findChild(FeedbackDatasetDialog)
    qtbot.waitUntil(lambda: "rows from" in dialog.count_label.text(), timeout=10_000)
    assert dialog.count_label.text().startswith("3 rows from 3 rated replies")  # SFT first
    assert not dialog.make_button.isEnabled()  # no name yet

    # ratings from the future: nothing to make, and the dialog says where ratings come from
    with qtbot.waitSignal(dialog.sig_counted, timeout=10_000):
        dialog.since_check.setChecked(True)
    with qtbot.waitSignal(dialog.sig_counted, timeout=10_000):
        dialog.since_date.setDate(QDate.currentDate().addDays(2))
    assert "no rows" in dialog.count_label.text() and "Playground" in dialog.count_label.text()
    dialog.name_edit.setText("from-users")
    assert not dialog.make_button.isEnabled()

    with qtbot.waitSignal(dialog.sig_counted, timeout=10_000):
        dialog.since_check.setChecked(False)
    with qtbot.waitSignal(dialog.sig_counted, timeout=10_000):
        dialog.kind_combo.setCurrentIndex(dialog.kind_combo.findData("preference"))
    assert dialog.count_label.text().startswith("2 rows from 3 rated replies")
    assert dialog.make_button.isEnabled()
    with qtbot.waitSignal(dialog.sig_made, timeout=20_000) as made:
        qtbot.mouseClick(dialog.make_button, Qt.MouseButton.LeftButton)

    version = resolve_version(catalog, made.args[0])
    assert version.ref == "from-users@1"
    _assert_sample_pairs(version, ids)
    # the page lists the new version and shows it
    assert page.current_id == version.id
    shown = [page.list.topLevelItem(i).text(0) for i in range(page.list.topLevelItemCount())]
    assert any("from-users" in t for t in shown)

"""What the Datasets page shows before there is any dataset: the files it accepts, and a
small sample shipped with the app to start from (30 short chat conversations)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from llmops_desktop.datasets.shapes import SHAPE_LABELS
from llmops_desktop.resources import RESOURCES_DIR

SAMPLE_NAME = "chat-sample"
ACCEPTED = ("<b>Accepted files:</b> JSONL (.jsonl, .ndjson), JSON (.json), CSV or TSV "
            "(.csv, .tsv) and Parquet (.parquet).<br><b>Rows hold:</b> "
            + "; ".join(SHAPE_LABELS.values())
            + " — recognised from the column names (<code>messages</code>; "
              "<code>instruction</code>/<code>input</code>/<code>output</code>; "
              "<code>prompt</code>/<code>completion</code>; <code>text</code>), or mapped.")


def sample_dataset_path() -> Path:
    """The sample chat dataset (package data under resources/samples/)."""
    return RESOURCES_DIR / "samples" / f"{SAMPLE_NAME}.jsonl"


class EmptyDatasets(QWidget):
    """The empty state of the datasets list."""

    sig_sample_requested = Signal()
    """The user asked for the sample dataset."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("<h3>No datasets yet</h3>Import a file above, or start with the "
                       "sample: 30 short chat conversations, enough to try a fine-tune.")
        title.setWordWrap(True)
        self.formats_label = QLabel(ACCEPTED)
        self.formats_label.setWordWrap(True)
        self.sample_button = QPushButton("Import the sample dataset")
        self.sample_button.setToolTip(f"Import {SAMPLE_NAME}.jsonl, shipped with the app")
        self.sample_button.clicked.connect(self.sig_sample_requested)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.formats_label)
        layout.addWidget(self.sample_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)

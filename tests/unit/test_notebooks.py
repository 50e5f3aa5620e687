"""The tutorial notebooks as committed: no saved widget state.

A notebook saved from JupyterLab with its widget state keeps every widget model in its metadata,
the RealtimeWidget's whole front-end bundle (``_esm``, ~60 KB of built code, stale by the next
change) and the emulator's address of that run among them; opened without running it, the page
would draw those stale views. The views must come from running the cells (nbval does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_a_notebook_carries_no_saved_widget_state(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "widgets" not in json.loads(text)["metadata"], "clear the saved widget state"
    assert "_esm" not in text, "a built front-end bundle is in the notebook"

"""The quickstart notebook in real JupyterLab 4 and Notebook 7, in Chromium with a fake camera.

The server's kernel talks to the test's emulator through DECART_API_KEY / DECART_API_URL /
DECART_REALTIME_URL (so the widgets use ``dw.Decart()`` pointed at it). All cells run from the
Run menu; camera widgets are started with their Start button; then every widget must show "Live"
with a non-black output video, and the kernel must see ``generating``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_kit import read_frames, wait_for
from jupyter_servers import REPO, JupyterPage, JupyterServer, kernels_use, write_notebook

import decart_widget as dw

QUICKSTART = REPO / "notebooks" / "00-quickstart.ipynb"
CHECK_CELL = (
    "import gc, json, weakref\n"
    "import decart_widget as dw\n"
    "print('STATES', json.dumps(sorted([o.source, o.connection_state] for o in gc.get_objects()\n"
    "      if not isinstance(o, weakref.ProxyTypes) and isinstance(o, dw.RealtimeWidget))))"
)


def notebook_under_test(target: Path) -> None:
    """The quickstart without its clean-up cells, plus a cell that prints the widgets' states."""
    if QUICKSTART.exists():
        nb = json.loads(QUICKSTART.read_text())
        cells = [
            cell
            for cell in nb["cells"]
            if not (cell["cell_type"] == "code" and ".close()" in "".join(cell["source"]))
        ]
        for cell in cells:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        cells.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "dw-check-states",
                "metadata": {},
                "outputs": [],
                "source": CHECK_CELL,
            }
        )
        nb["cells"] = cells
        # no saved widget state: the views must come from running the cells
        nb["metadata"].pop("widgets", None)
        target.write_text(json.dumps(nb, indent=1))
    else:
        write_notebook(
            target,
            [
                "import decart_widget as dw\n"
                'w = dw.RealtimeWidget(prompt="invert", source="synthetic", autostart=True)\nw',
                CHECK_CELL,
            ],
        )


@pytest.fixture(scope="module", params=["lab", "notebook"])
def jupyter(request: pytest.FixtureRequest, emulator: dw.Emulator) -> Iterator[JupyterServer]:
    """A JupyterLab 4 / Notebook 7 server whose kernels use the test emulator."""
    env = kernels_use(emulator)
    with JupyterServer(request.param, env=env) as server:
        yield server


def kernel_states(ui: JupyterPage, index: int = -1) -> list[list[str]] | None:
    """The ``[source, connection_state]`` pairs the check cell printed, or None before it ran."""
    for line in ui.output_text(index).splitlines():
        if line.startswith("STATES "):
            return list(json.loads(line[len("STATES ") :]))
    return None


def wait_live(page: Any, index: int) -> None:
    """View ``index`` shows Live and a non-black transformed video."""
    root = page.locator(".decart-widget").nth(index)
    root.scroll_into_view_if_needed()  # a user looks at it (Chromium may pause hidden videos)
    pill = root.locator(".dw-pill")
    wait_for(lambda: pill.inner_text() == "Live", 30, f"widget {index} to show Live")

    def output_shows() -> bool:
        frames = read_frames(page, index)
        return bool(frames.ready and frames.output and frames.output.peak > 50)

    wait_for(output_shows, 20, f"widget {index}'s transformed video", every=0.2)
    assert not root.locator(".dw-banner").is_visible(), root.locator(".dw-banner").inner_text()


def test_quickstart_reaches_generating(
    jupyter: JupyterServer, page: Any, emulator: dw.Emulator
) -> None:
    notebook_under_test(jupyter.root_dir / "quickstart.ipynb")
    ui = JupyterPage(page, jupyter)
    ui.open("quickstart.ipynb")
    ui.run_all()

    widgets = page.locator(".decart-widget")
    # the check cell runs last: once it printed, every widget is displayed
    wait_for(lambda: kernel_states(ui) is not None, 90, "all cells to run")
    count = widgets.count()
    assert count >= 1
    # camera widgets start on a click (the fake camera needs no permission prompt)
    for index in range(count):
        start = widgets.nth(index).locator(".dw-overlay")
        if start.is_visible():
            start.click()
    for index in range(count):
        wait_live(page, index)

    # the kernel sees the state its front end reports
    ui.run_cell(-1)
    wait_for(
        lambda: (
            (states := kernel_states(ui))
            and all(s == "generating" for source, s in states if source == "camera")
        ),
        20,
        "the kernel to see the camera widgets generating",
    )
    states = kernel_states(ui)
    assert states is not None and len(states) == count
    assert any(session.live and session.frames_sent > 0 for session in emulator.sessions)
    # every widget, including the one that autostarts while the next cell awaits
    assert all(state == "generating" for _, state in states), states


# ipykernel 7 handles a comm_msg that arrives during a top-level-await cell without a busy/idle
# status, and ipywidgets' front end holds later state updates until that idle comes; the front
# end therefore also reports its state by custom message (js/src/sync.ts).
@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_state_reaches_the_kernel_when_the_next_cell_awaits(
    jupyter: JupyterServer, page: Any
) -> None:
    write_notebook(
        jupyter.root_dir / "await.ipynb",
        [
            "import decart_widget as dw\n"
            'w = dw.RealtimeWidget(prompt="invert", source="synthetic", autostart=True)\nw',
            "import asyncio\nawait asyncio.sleep(4)",
            "print('STATE', w.connection_state)",
        ],
    )
    ui = JupyterPage(page, jupyter)
    ui.open("await.ipynb")
    ui.run_all()
    wait_for(lambda: "STATE" in ui.output_text(-1), 60, "all cells to run")
    wait_live(page, 0)
    ui.run_cell(-1)
    wait_for(lambda: "STATE generating" in ui.output_text(-1), 10, "the kernel to see generating")


def _luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb(...)``/``rgba(...)`` CSS colour."""
    channels = css_colour[css_colour.index("(") + 1 : css_colour.index(")")].split(",")
    r, g, b = (float(c) / 255 for c in channels[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_the_view_follows_the_light_and_dark_themes(jupyter: JupyterServer, page: Any) -> None:
    write_notebook(
        jupyter.root_dir / "theme.ipynb",
        ["import decart_widget as dw\nw = dw.RealtimeWidget(source='synthetic')\nw"],
    )
    ui = JupyterPage(page, jupyter)
    ui.open("theme.ipynb")
    ui.run_cell(0)
    root = page.locator(".decart-widget").first
    root.wait_for(timeout=30_000)

    def colours() -> tuple[float, float]:
        style = root.evaluate(
            "(el) => { const s = getComputedStyle(el); return [s.backgroundColor, s.color]; }"
        )
        return _luminance(style[0]), _luminance(style[1])

    background, text = colours()
    assert background > 0.8 and text < 0.3, (background, text)

    def choose_theme(name: str) -> None:
        page.locator(".lm-MenuBar-item", has_text="Settings").first.click()
        page.locator(".lm-Menu-item", has_text="Theme").first.hover()
        page.get_by_role("menuitem", name=name, exact=True).click()

    choose_theme("JupyterLab Dark")
    wait_for(lambda: colours()[0] < 0.2, 20, "the view's background to turn dark")
    assert colours()[1] > 0.6, "the view's text is light on the dark theme"
    choose_theme("JupyterLab Light")  # the server is shared with the other tests
    wait_for(lambda: colours()[0] > 0.8, 20, "the view's background to turn light again")

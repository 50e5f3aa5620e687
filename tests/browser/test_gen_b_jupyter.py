"""LiveKit widgets in real JupyterLab 4 and Notebook 7 (Chromium, fake camera): the page imports
the LiveKit asset from the package's server extension by its hash (and, in a JupyterLab whose
extension is disabled, gets it over the real Jupyter comm after the route's 404), joins the
emulator's rooms, and the pixels are transformed;
a direct-signaling camera widget and a kernel-signaling synthetic one share the page (and the
asset). The kernel talks to the test's emulator through DECART_API_KEY / DECART_API_URL /
DECART_REALTIME_URL, as in test_jupyter.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import read_frames, wait_for
from jupyter_servers import JupyterPage, JupyterServer, kernels_use, write_notebook

import decart_widget as dw

CELLS = [
    "import decart_widget as dw\n"
    'cam = dw.RealtimeWidget(prompt="invert", source="camera", transport="livekit")\ncam',
    'pattern = dw.RealtimeWidget(prompt="invert", source="synthetic", signaling="kernel",\n'
    '                            transport="livekit", autostart=True)\npattern',
    "import json\n"
    "print('STATES', json.dumps([[w.transport, w.connection_state, w.queue_position]\n"
    "                            for w in (cam, pattern)]))",
]


WITHOUT_EXTENSION = "lab-without-extension"


@pytest.fixture(scope="module", params=["lab", "notebook", WITHOUT_EXTENSION])
def jupyter(request: pytest.FixtureRequest, emulator: dw.Emulator) -> Iterator[JupyterServer]:
    env = kernels_use(emulator)
    app, args = request.param, []
    if app == WITHOUT_EXTENSION:
        app, args = "lab", ["--ServerApp.jpserver_extensions=decart_widget=False"]
    with JupyterServer(app, env=env, args=args) as server:
        server.served_assets = app == request.param  # type: ignore[attr-defined]
        yield server


def asset_urls(page: Any) -> list[str]:
    """The URLs the page fetched the widget's assets from over HTTP (the server extension's)."""
    return list(
        page.evaluate(
            "() => performance.getEntriesByType('resource').map((e) => e.name)"
            ".filter((name) => name.includes('/decart-widget/assets/'))"
        )
    )


def states(ui: JupyterPage) -> list[list[Any]] | None:
    for line in ui.output_text(-1).splitlines():
        if line.startswith("STATES "):
            return list(json.loads(line[len("STATES ") :]))
    return None


def test_livekit_widgets_transform_the_video_in_jupyter(
    jupyter: JupyterServer, page: Any, emulator: dw.Emulator
) -> None:
    baseline = len(emulator.sessions)
    write_notebook(jupyter.root_dir / "gen_b.ipynb", CELLS)
    ui = JupyterPage(page, jupyter)
    ui.open("gen_b.ipynb")
    ui.run_all()
    wait_for(lambda: states(ui) is not None, 90, "all cells to run")
    widgets = page.locator(".decart-widget")
    # the views render after their outputs arrive (the page loads the widget's module first)
    wait_for(lambda: widgets.count() == 2, 30, "both widgets to be displayed")
    widgets.nth(0).locator(".dw-overlay").click()  # the camera starts on a click

    for index in range(2):
        root = widgets.nth(index)
        root.scroll_into_view_if_needed()
        pill = root.locator(".dw-pill")
        wait_for(lambda p=pill: p.inner_text() == "Live", 60, f"widget {index} to show Live")
        wait_for(
            lambda i=index: (f := read_frames(page, i)).ready and f.inverted(),
            30,
            f"widget {index}'s inverted output from its room",
            every=0.2,
        )

    ui.run_cell(-1)
    wait_for(
        lambda: (s := states(ui)) is not None and all(state == "generating" for _, state, _ in s),
        20,
        "the kernel to see both widgets generating",
    )
    assert states(ui) == [["livekit", "generating", None], ["livekit", "generating", None]]
    sessions = emulator.sessions[baseline:]
    assert len(sessions) == 2 and {s.transport for s in sessions} == {"livekit"}
    assert all(s.live and s.frames_sent > 0 and s.room_name for s in sessions)
    assert emulator.api_key not in page.content()
    # both widgets share one import of livekit.js: from the server by its build id, or, without the
    # extension, from the comm after one 404 (asset_loader.ts)
    urls = asset_urls(page)
    assert len(urls) == 1 and urls[0].endswith("/livekit.js")
    if jupyter.served_assets:  # type: ignore[attr-defined]
        assert page.evaluate("(url) => fetch(url).then((r) => r.status)", urls[0]) == 200
    else:
        assert page.evaluate("(url) => fetch(url).then((r) => r.status)", urls[0]) == 404

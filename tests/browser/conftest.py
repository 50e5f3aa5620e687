"""Browser tests: Debian's Chromium (Playwright cannot download browsers here) with a fake camera.

pytest-ipywidgets' ``solara_test`` fixture displays a widget in a real page served by an
in-process solara server; the kernel side runs in this process, so tests read traitlets directly
and assert on the pixels of the page's <video> elements (see `browser_kit.py`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser_kit import WidgetPage

import decart_widget as dw

CHROMIUM = os.environ.get("DECART_WIDGET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # a hidden or occluded page must keep decoding and rendering video
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)
            if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
                item.add_marker(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator: dw.Emulator) -> Iterator[dw.Emulator]:
    """The shared emulator, well-behaved at the start and the end of every test."""
    emulator.faults.reset()
    yield emulator
    emulator.faults.reset()


@pytest.fixture
def widget_page(solara_test: None, page_session: Any) -> WidgetPage:
    return WidgetPage(page_session)


@pytest.fixture
def make_widget(
    widget_page: WidgetPage, emu: dw.Emulator
) -> Iterator[Callable[..., dw.RealtimeWidget]]:
    """Create widgets on the shared emulator (defaults: synthetic source, the WebRTC transport:
    these files test Gen-A, test_gen_b.py asks for LiveKit); closed at the end."""
    made: list[dw.RealtimeWidget] = []

    def make(**kwargs: Any) -> dw.RealtimeWidget:
        kwargs.setdefault("backend", emu)
        kwargs.setdefault("source", "synthetic")
        kwargs.setdefault("transport", "webrtc")
        widget = dw.RealtimeWidget(**kwargs)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.close()

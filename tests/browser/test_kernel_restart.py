"""The end of the kernel behind a widget ends its server session, in both signaling modes.

Real JupyterLab 4 in Chromium: the kernel restarted from the Kernel menu (the front end then knows
it restarts), restarted by another client through the REST API (the page only sees the new kernel
start), shut down from the menu; the notebook's tab closed with its kernel left running; and a
menu restart in Notebook 7.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import wait_for

import decart_widget as dw


def _server(emulator: dw.Emulator, app: str) -> Any:
    jupyter_servers = pytest.importorskip("jupyter_servers")
    env = jupyter_servers.kernels_use(emulator)
    return jupyter_servers.JupyterServer(app, env=env)


@pytest.fixture(scope="module")
def lab(emulator: dw.Emulator) -> Iterator[Any]:
    with _server(emulator, "lab") as server:
        yield server


def restart_through_the_api(server: Any, notebook: str) -> None:
    """Another client (a second tab, a script) restarts the kernel: this page did not ask."""
    url = f"{server.base_url}/api/sessions?token={server.token}"
    with urllib.request.urlopen(url, timeout=10) as response:
        sessions = json.load(response)
    (kernel_id,) = [s["kernel"]["id"] for s in sessions if s["path"].endswith(notebook)]
    request = urllib.request.Request(
        f"{server.base_url}/api/kernels/{kernel_id}/restart?token={server.token}",
        method="POST",
        data=b"",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def generating_widget(lab: Any, page: Any, emulator: dw.Emulator, notebook: str, signaling: str):
    """Open a notebook whose widget generates; return (its page, the emulator's session id)."""
    from jupyter_servers import JupyterPage, write_notebook

    emulator.faults.reset()
    baseline = len(emulator.sessions)
    write_notebook(
        lab.root_dir / notebook,
        [
            "import decart_widget as dw\n"
            f"w = dw.RealtimeWidget(prompt='invert', signaling={signaling!r}, "
            "source='synthetic', autostart=True)\nw",
        ],
    )
    ui = JupyterPage(page, lab)
    ui.open(notebook)
    ui.run_cell(0)
    wait_for(
        lambda: len(emulator.sessions) > baseline and emulator.sessions[-1].frames_sent > 10,
        60,
        "the widget to generate",
    )
    return ui, emulator.sessions[-1].id, baseline


def wait_session_end(emulator: dw.Emulator, session_id: str, since: float) -> float:
    emulator.wait_until(
        lambda: next(s for s in emulator.sessions if s.id == session_id).end_reason is not None,
        10,
    )
    return time.monotonic() - since


def assert_nothing_reconnects(emulator: dw.Emulator, baseline: int, seconds: float = 3.0) -> None:
    time_limit = time.monotonic() + seconds
    while time.monotonic() < time_limit:
        assert all(s.end_reason is not None for s in emulator.sessions[baseline:])
        time.sleep(0.2)


@pytest.mark.parametrize("signaling", ["direct", "kernel"])
@pytest.mark.parametrize("how", ["menu", "api"])
def test_a_kernel_restart_ends_the_server_session_and_says_so(
    lab: Any, page: Any, emulator: dw.Emulator, signaling: str, how: str
) -> None:
    notebook = f"restart-{how}-{signaling}.ipynb"
    ui, session_id, baseline = generating_widget(lab, page, emulator, notebook, signaling)
    if how == "menu":
        ui.kernel_menu("kernelmenu:restart")
    else:
        # this page hears nothing until the new kernel runs: count from there
        restart_through_the_api(lab, notebook)
    restarted = time.monotonic()
    ended_after = wait_session_end(emulator, session_id, restarted)
    # a bound that tells "ended because of the restart" from any later cause, not a speed goal
    assert ended_after < 5.0, f"the server session ended {ended_after:.1f} s after the restart"
    assert_nothing_reconnects(emulator, baseline)
    # the widget stays in the output and says what happened; Start cannot revive it
    view = page.locator(".decart-widget").first
    wait_for(lambda: "kernel restarted" in view.inner_text().lower(), 10, "the explanation")
    page.locator(".decart-widget .dw-start").first.click()
    assert_nothing_reconnects(emulator, baseline, seconds=2.0)
    assert "kernel restarted" in view.inner_text().lower()


def test_a_kernel_restart_in_notebook_7_ends_a_direct_session(
    page: Any, emulator: dw.Emulator
) -> None:
    with _server(emulator, "notebook") as notebook7:
        ui, session_id, baseline = generating_widget(
            notebook7, page, emulator, "restart-nb7.ipynb", "direct"
        )
        ui.kernel_menu("kernelmenu:restart")
        ended_after = wait_session_end(emulator, session_id, time.monotonic())
        assert ended_after < 5.0, f"the server session ended {ended_after:.1f} s after the restart"
        view = page.locator(".decart-widget").first
        wait_for(lambda: "kernel restarted" in view.inner_text().lower(), 10, "the explanation")
        assert_nothing_reconnects(emulator, baseline)


def test_shutting_the_kernel_down_ends_a_direct_session(
    lab: Any, page: Any, emulator: dw.Emulator
) -> None:
    ui, session_id, baseline = generating_widget(lab, page, emulator, "shutdown.ipynb", "direct")
    since = time.monotonic()
    ui.kernel_menu("kernelmenu:shutdown", confirm=False)  # asks nothing
    ended_after = wait_session_end(emulator, session_id, since)
    assert ended_after < 5.0, f"the server session ended {ended_after:.1f} s after the shutdown"
    view = page.locator(".decart-widget").first
    wait_for(lambda: "kernel shut down" in view.inner_text().lower(), 10, "the explanation")
    assert_nothing_reconnects(emulator, baseline)


@pytest.mark.parametrize("signaling", ["direct", "kernel"])
def test_closing_the_notebook_tab_ends_the_server_session(
    lab: Any, page: Any, emulator: dw.Emulator, signaling: str
) -> None:
    notebook = f"close-{signaling}.ipynb"
    ui, session_id, baseline = generating_widget(lab, page, emulator, notebook, signaling)
    since = time.monotonic()
    ui.close_tab(notebook)
    ended_after = wait_session_end(emulator, session_id, since)
    assert ended_after < 2.0, f"the server session ended {ended_after:.1f} s after closing"
    assert_nothing_reconnects(emulator, baseline)

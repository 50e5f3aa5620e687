"""RealtimeWidget(signaling="proxy") in Chromium, through the real signaling proxy to the emulator.

The page holds only the platform's user token; the proxy holds the service's key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from browser_kit import Frames, WidgetPage, wait_for

import decart_widget as dw
from decart_widget.proxy import ProxyServer

Make = Callable[..., dw.RealtimeWidget]


@pytest.fixture
def proxy(emu: dw.Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    ledger = tmp_path_factory.mktemp("ledger") / "usage.sqlite"
    server = ProxyServer(upstream=emu, secret="browser-test-secret", ledger=str(ledger)).start()
    yield server
    server.stop()


def test_the_widget_runs_through_the_proxy_with_only_a_user_token(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator, proxy: ProxyServer
) -> None:
    baseline = len(emu.sessions)
    token = proxy.issue_token("alice")
    w = make_widget(
        prompt="invert",
        signaling="proxy",
        proxy_url=proxy.realtime_url,
        proxy_token=token,
        backend=None,
        autostart=True,
    )
    widget_page.show(w)
    wait_for(lambda: w.connection_state == "generating", 30, f"generating ({w.last_error!r})")
    widget_page.wait_frames(Frames.inverted, what="the inverted output through the proxy")

    w.prompt = "noir"
    widget_page.wait_frames(Frames.noir, what="the noir output through the proxy")
    wait_for(lambda: len(emu.sessions) > baseline, 5, "the emulator to see the session")
    session = emu.sessions[baseline]
    assert session.prompts_applied[:2] == ["invert", "noir"]
    assert session.key_kind == "permanent"  # the proxy's key, not anything from the page

    wait_for(lambda: w.generation_seconds >= 2, 10, "ticks through the proxy")
    wait_for(lambda: proxy.usage("alice") >= 1, 10, "the proxy's ledger to record alice's usage")

    # the page never saw the service's key
    page = widget_page.page
    html = page.content()
    state = json.dumps({k: v for k, v in w.get_state().items() if isinstance(v, (str, int))})
    assert emu.api_key not in html and emu.api_key not in state


def test_a_bad_user_token_is_refused_without_retrying(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator, proxy: ProxyServer
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(
        prompt="invert",
        signaling="proxy",
        proxy_url=proxy.realtime_url,
        proxy_token="not-a-valid-token",
        backend=None,
        autostart=True,
    )
    widget_page.show(w)
    wait_for(lambda: w.last_error_kind == "authentication", 20, f"an auth error ({w.last_error!r})")
    assert w.connection_state == "disconnected"
    assert len(emu.sessions) == baseline  # no upstream session was opened

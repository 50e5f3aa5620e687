"""RealtimeWidget(transport="livekit") in Chromium on the emulator's Gen-B room, in every
signaling mode: the control socket's handshake ends in ``livekit_room_info``, the page loads the
LiveKit asset from the kernel, joins the room with the room token and shows the video of the
``inference-server-*`` participant (docs/protocol.md, "Gen-B (LiveKit) handshake").

The kernel side runs in this process (``solara_test``), so the tests read traitlets and the
emulator's session records directly and assert on the page's pixels (see `browser_kit`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from browser_kit import Frames, Recorder, WidgetPage, wait_for, webm_inverted, write_webm
from stun_kit import StunServer

import decart_widget as dw
from decart_widget.images import encode_png
from decart_widget.proxy import ProxyServer

Make = Callable[..., dw.RealtimeWidget]
MODES = ("direct", "kernel", "proxy")


class Outbox:
    """Every custom message the widget sends to the front end (still sent)."""

    def __init__(self, widget: dw.RealtimeWidget) -> None:
        self.messages: list[Any] = []
        original = widget.send

        def send(content: Any, buffers: Any = None) -> None:
            self.messages.append(content)
            original(content, buffers)

        widget.send = send  # type: ignore[method-assign]


@pytest.fixture
def proxy(emu: dw.Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    ledger = tmp_path_factory.mktemp("ledger") / "usage.sqlite"
    server = ProxyServer(upstream=emu, secret="gen-b-browser-secret", ledger=str(ledger)).start()
    yield server
    server.stop()


@pytest.fixture
def gen_b(make_widget: Make, request: pytest.FixtureRequest) -> Callable[..., dw.RealtimeWidget]:
    """A LiveKit widget in the given signaling mode (proxy: through a real signaling proxy)."""

    def make(mode: str = "direct", **kwargs: Any) -> dw.RealtimeWidget:
        kwargs.setdefault("transport", "livekit")
        if mode == "proxy":
            server: ProxyServer = request.getfixturevalue("proxy")
            kwargs.update(
                proxy_url=server.realtime_url,
                proxy_token=server.issue_token("alice"),
                backend=None,
            )
        return make_widget(signaling=mode, **kwargs)

    return make


def wait_state(widget: dw.RealtimeWidget, state: str, timeout: float = 30.0) -> None:
    wait_for(
        lambda: widget.connection_state == state,
        timeout,
        f"connection_state == {state!r} (now {widget.connection_state!r}, "
        f"last_error {widget.last_error!r})",
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_livekit_session_transforms_the_video_in_each_signaling_mode(
    mode: str, gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = gen_b(mode, prompt="invert", autostart=True)
    outbox = Outbox(w)
    states = Recorder(w, "connection_state")
    widget_page.show(w)

    wait_state(w, "generating")
    assert states.distinct() in (
        ["disconnected", "connecting", "connected", "generating"],
        ["disconnected", "connecting", "generating"],
    ), states.values
    widget_page.wait_frames(Frames.inverted, 30, "the inverted output from the room")
    session = emu.wait_for_session(baseline)
    assert session.transport == "livekit" and session.room_name
    assert w.session_id == session.id

    w.prompt = "noir"  # from Python: the same control channel as Gen-A
    widget_page.wait_frames(Frames.noir, what="a grey output after the noir prompt")
    emu.wait_until(lambda: emu.sessions[baseline].prompts_applied[-1:] == ["noir"], 5)
    wait_for(lambda: w.generation_seconds >= 2, 10, "generation_seconds >= 2")
    assert widget_page.text(".dw-pill") == "Live"
    wait_for(lambda: w.stats.get("fps_out", 0) > 0, 10, "stats from the room's tracks")
    assert w.last_error == "" and (w.queue_position, w.queue_size) == (None, None)
    assert len(emu.sessions) == baseline + 1

    # the permanent key is in no frame, message, DOM or state
    in_browser = widget_page.page.evaluate(
        "() => JSON.stringify({ls: {...localStorage}, ss: {...sessionStorage},"
        " html: document.documentElement.outerHTML})"
    )
    state = {k: v for k, v in w.get_state().items() if not isinstance(v, (bytes, memoryview))}
    messages = json.dumps(outbox.messages, default=str)
    assert emu.api_key not in in_browser + messages + json.dumps(state, default=str)

    # close() ends the room session within 2 s
    started = time.monotonic()
    w.close()
    emu.wait_until(
        lambda: emu.sessions[baseline].end_reason is not None,
        max(0.1, 2.0 - (time.monotonic() - started)),
    )
    assert time.monotonic() - started < 2.0
    assert emu.sessions[baseline].end_reason == "disconnect", emu.sessions[baseline]


def test_the_page_asks_for_the_livekit_asset_once_and_reuses_it(
    gen_b: Make, make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    first = gen_b(prompt="invert", autostart=True)
    first_out = Outbox(first)
    widget_page.show(first)
    wait_state(first, "generating")
    first.stop()
    wait_state(first, "disconnected")
    first.start()  # a second session of the same widget
    wait_state(first, "generating")
    second = gen_b(prompt="noir", autostart=True)  # another widget in the same page
    second_out = Outbox(second)
    widget_page.show(second, views=1)
    wait_state(second, "generating")
    asked = [
        m
        for m in first_out.messages + second_out.messages
        if isinstance(m, dict) and m.get("type") == "asset" and m.get("name") == "livekit"
    ]
    # one delivery at most (none when an earlier test of this page's session loaded it)
    assert len({m["index"] for m in asked}) == len(asked)


def test_the_queue_position_shows_then_clears(
    gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    emu.set_room_capacity(0)  # every new session waits in line
    try:
        w = gen_b(prompt="invert", autostart=True)
        positions = Recorder(w, "queue_position")
        widget_page.show(w)
        wait_for(lambda: w.queue_position == 1, 20, f"queued (state {w.connection_state!r})")
        assert w.queue_size == 1 and w.connection_state == "connecting"
        wait_for(
            lambda: widget_page.text(".dw-pill") == "In line: 1 of 1", 10, "the queue in the view"
        )
        emu.set_room_capacity(None)
        wait_state(w, "generating")
        assert (w.queue_position, w.queue_size) == (None, None)
        assert positions.values[-1] is None and 1 in positions.values
        widget_page.wait_frames(Frames.inverted, 30, "the inverted output after the queue")
        assert widget_page.text(".dw-pill") == "Live"
    finally:
        emu.set_room_capacity(None)


@pytest.mark.parametrize("mode", ["direct", "kernel"])
def test_a_dropped_control_socket_reconnects_with_the_latest_prompt_and_image(
    mode: str, gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    emu.faults.drop_socket_after = 5.0  # read when a session's socket opens
    w = gen_b(mode, prompt="invert", autostart=True)
    states = Recorder(w, "connection_state")
    widget_page.show(w)
    emu.wait_for_session(baseline, 20)
    emu.faults.drop_socket_after = None  # the reconnect's session stays up

    wait_state(w, "generating")
    red = np.zeros((48, 64, 3), dtype=np.uint8)
    red[..., 0] = np.linspace(160, 255, 64, dtype=np.uint8)[None, :]
    red[..., 1] = red[..., 2] = np.linspace(10, 60, 48, dtype=np.uint8)[:, None]
    w.prompt = "noir"  # set after connecting: the replay must carry these, not the initial ones
    w.set_image(red)
    emu.wait_until(lambda: emu.sessions[baseline].images_applied, 10)

    wait_for(lambda: "reconnecting" in states.values, 20, "reconnecting after the drop")
    wait_for(
        lambda: states.distinct()[-1] == "generating" and len(emu.sessions) > baseline + 1,
        30,
        "generating again after the reconnect",
    )
    assert emu.sessions[baseline].end_reason == "dropped"
    replay = emu.sessions[baseline + 1]
    assert replay.transport == "livekit" and replay.room_name != emu.sessions[baseline].room_name
    assert replay.prompts_applied[:1] == ["noir"]
    assert replay.images_applied[:1] == [hashlib.sha256(encode_png(red)).hexdigest()]
    seen = states.distinct()
    assert "disconnected" not in seen[seen.index("reconnecting") :], seen
    widget_page.wait_frames(
        lambda f: f.output.mean[0] > f.output.mean[1] + 80,
        30,
        "the red-tinted output in the new room",
    )


def test_the_fake_camera_publishes_into_the_room(
    gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    w = gen_b(prompt="invert", source="camera")
    widget_page.show(w)
    w.start()
    wait_state(w, "generating")
    frames = widget_page.wait_frames(Frames.inverted, 30, "the inverted camera picture")
    assert frames.input is not None and frames.input.width > 0


@pytest.mark.parametrize("source", ["video", "screen"])
def test_a_video_file_or_the_screen_publishes_into_the_room(
    source: str, gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator, tmp_path: Any
) -> None:
    """The sources of sources.js on Gen-B; Chromium's fake capture UI picks the whole (fake)
    screen, as a user's choice would."""
    baseline = len(emu.sessions)
    if source == "video":
        write_webm(tmp_path / "clip.webm")
        w = gen_b(prompt="invert", source="video", video=tmp_path / "clip.webm")
    else:
        w = gen_b(prompt="invert", source="screen")
    widget_page.show(w)
    widget_page.root().locator(".dw-start").click()  # a screen is shared on a user's click
    wait_state(w, "generating")
    if source == "video":
        frames = widget_page.wait_frames(webm_inverted, 30, "the inverted video file")
        assert frames.input is not None
        left_in = frames.input.region(0.05, 0.45)
        assert left_in[0] > left_in[1] + 80  # the input preview shows the red half
    else:
        frames = widget_page.wait_frames(Frames.inverted, 30, "the inverted screen")
    session = emu.wait_for_session(baseline)
    assert session.transport == "livekit" and session.room_name
    # a session record is a snapshot: read the emulator's latest one
    wait_for(lambda: emu.sessions[baseline].frames_received > 10, 10, "frames in the room")


def test_a_new_source_while_live_replaces_the_rooms_track(
    gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator, tmp_path: Any
) -> None:
    baseline = len(emu.sessions)
    w = gen_b(prompt="invert", autostart=True)  # the synthetic pattern first
    widget_page.show(w)
    wait_state(w, "generating")
    widget_page.wait_frames(Frames.inverted, 30, "the inverted pattern")
    w.video = write_webm(tmp_path / "clip.webm")
    w.source = "video"
    widget_page.wait_frames(webm_inverted, 30, "the inverted video file in the same room")
    assert len(emu.sessions) == baseline + 1  # the same session: the track was swapped
    assert emu.sessions[baseline].end_reason is None and w.connection_state == "generating"


def test_ice_servers_reach_the_rooms_connections(
    gen_b: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    """The page's livekit-client gathers from the STUN server the widget was given (one on
    loopback that records Binding requests)."""
    with StunServer() as stun:
        w = gen_b(prompt="invert", autostart=True, ice_servers=[{"urls": stun.url}])
        widget_page.show(w)
        wait_state(w, "generating")
        wait_for(lambda: stun.requests, 15, "a Binding request from the room's connections")
        widget_page.wait_frames(Frames.inverted, 30, "the inverted output")

"""RealtimeWidget in Chromium against the real emulator: pixels of the remote video, traitlets,
and what reached the server.

Every test displays widgets with pytest-ipywidgets' ``solara_test`` (the kernel side runs in this
process) and waits on conditions with deadlines. The synthetic source is a colourful animated
gradient, so the emulator's effects are told apart by picture statistics (see `browser_kit`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from browser_kit import Frames, Recorder, WidgetPage, wait_for, webm_inverted, write_webm

import decart_widget as dw
from decart_widget.images import encode_png

Make = Callable[..., dw.RealtimeWidget]


def new_sessions(emu: dw.Emulator, baseline: int) -> list[Any]:
    return emu.sessions[baseline:]


def wait_state(widget: dw.RealtimeWidget, state: str, timeout: float = 20.0) -> None:
    wait_for(
        lambda: widget.connection_state == state,
        timeout,
        f"connection_state == {state!r} (now {widget.connection_state!r}, "
        f"last_error {widget.last_error!r})",
    )


def test_output_plays_the_prompts_effect_and_state_progresses(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", autostart=True)
    states = Recorder(w, "connection_state")
    widget_page.show(w)

    wait_state(w, "generating")
    # "connected" (the browser's peer is up) may come before or after the server's
    # generation_started; once generating, the state stays there
    assert states.distinct() in (
        ["disconnected", "connecting", "connected", "generating"],
        ["disconnected", "connecting", "generating"],
    ), states.values
    frames = widget_page.wait_frames(Frames.inverted, what="the inverted output")
    assert frames.output and frames.output.width > 0

    # the remote video keeps playing, and its pixels keep showing the effect
    later = widget_page.wait_frames(
        lambda f: f.output.time > frames.output.time + 0.5 and f.inverted(),
        what="the output video to advance",
    )
    assert later.output is not None and later.output.brightness > 10

    # usage grows by whole seconds; the view shows it, the state pill says Live
    wait_for(lambda: w.generation_seconds >= 2, 10, "generation_seconds >= 2")
    assert widget_page.text(".dw-pill") == "Live"
    assert "used" in widget_page.text(".dw-usage")

    (session,) = new_sessions(emu, baseline)
    assert session.prompts_applied == ["invert"]
    assert session.live and session.frames_received > 0 and session.frames_sent > 0
    assert w.session_id == session.id
    assert w.last_error == "" and w.last_error_kind == ""
    wait_for(lambda: w.stats.get("fps_out", 0) > 0, 10, "stats with fps_out")


def test_prompt_set_from_python_changes_the_pixels_and_reaches_the_emulator(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", autostart=True)
    widget_page.show(w)
    widget_page.wait_frames(Frames.inverted, 20, "the inverted output")

    w.prompt = "Film noir"
    widget_page.wait_frames(Frames.noir, what="a grey output after the noir prompt")
    assert len(new_sessions(emu, baseline)) == 1
    emu.wait_until(lambda: emu.sessions[baseline].prompts_applied[-1:] == ["Film noir"], 5)

    w.prompt = ""  # no prompt: the input passes through unchanged
    widget_page.wait_frames(Frames.same, what="the passthrough output")
    # the view's prompt box follows the traitlet
    assert widget_page.root().locator(".dw-prompt").input_value() == ""
    assert w.prompt == "" and w.last_error == ""


def test_reference_image_set_and_cleared_from_python(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="noir", autostart=True)
    widget_page.show(w)
    widget_page.wait_frames(Frames.noir, 20, "the noir output")

    # a red reference image pulls the grey output's colours to red
    red = np.zeros((48, 64, 3), dtype=np.uint8)
    red[..., 0] = np.linspace(160, 255, 64, dtype=np.uint8)[None, :]
    red[..., 1] = red[..., 2] = np.linspace(10, 60, 48, dtype=np.uint8)[:, None]
    png = encode_png(red)
    w.set_image(red)
    assert w.image == png
    reddened = widget_page.wait_frames(
        lambda f: f.output.mean[0] > f.output.mean[1] + 80 and f.output.mean[0] > 150,
        what="a red output after the reference image",
    )
    session = emu.sessions[baseline]
    emu.wait_until(lambda: emu.sessions[baseline].images_applied, 5)
    assert emu.sessions[baseline].images_applied == [hashlib.sha256(png).hexdigest()]
    assert widget_page.root().locator(".dw-thumb").is_visible()

    w.image = None
    widget_page.wait_frames(Frames.noir, what="the grey output again after clearing the image")
    emu.wait_until(lambda: len(emu.sessions[baseline].images_applied) == 2, 5)
    session = emu.sessions[baseline]
    assert session.images_applied[-1] is None
    # the image travels with the prompt: the prompt stays in force
    assert session.prompts_applied[-1] == "noir"
    assert not widget_page.root().locator(".dw-thumb").is_visible()
    assert reddened.output is not None and w.last_error == ""


def test_moderated_prompt_reverts_to_the_last_accepted_one(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", autostart=True)
    widget_page.show(w)
    wait_state(w, "generating")
    prompts = Recorder(w, "prompt")

    w.prompt = "a scene of violence"
    wait_for(lambda: w.last_error_kind == "moderation", 10, "the moderation error")
    wait_for(lambda: w.prompt == "invert", 5, "the prompt to revert to 'invert'")
    assert prompts.distinct() == ["invert", "a scene of violence", "invert"]
    assert w.last_error
    banner = widget_page.root().locator(".dw-banner")
    banner.wait_for(state="visible")
    assert w.last_error.lower() in banner.inner_text().lower()
    assert widget_page.root().locator(".dw-prompt").input_value() == "invert"

    # the session carries on with the accepted prompt
    assert w.connection_state == "generating"
    widget_page.wait_frames(Frames.inverted, what="the output still inverted")
    session = emu.sessions[baseline]
    assert session.prompts_applied == ["invert"]
    assert [what for what, _ in session.rejected] == ["prompt"]
    assert len(emu.sessions) == baseline + 1


def test_invalid_key_shows_its_error_without_retrying(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    attempts = len(emu.sessions) + len(emu.rejections)
    backend = dw.Decart(api_key="dct_wrong", api_url=emu.api_url, realtime_url=emu.realtime_url)
    w = make_widget(prompt="invert", backend=backend, autostart=True)
    states = Recorder(w, "connection_state")
    token_requests: list[Any] = []
    w.on_msg(
        lambda _w, content, _b: (
            token_requests.append(content) if content.get("type") == "token_request" else None
        )
    )
    widget_page.show(w)

    wait_for(lambda: w.last_error_kind == "authentication", 15, "the authentication error")
    banner = widget_page.root().locator(".dw-banner-text")
    banner.wait_for(state="visible")
    assert w.last_error and w.last_error.lower() in banner.inner_text().lower()
    assert "api key" in w.last_error.lower() or "401" in w.last_error
    assert widget_page.text(".dw-pill") == "Error"

    # A retry would come within the first backoff (1 s): watch for longer than that.
    time.sleep(2.5)
    assert w.connection_state == "disconnected"
    assert "reconnecting" not in states.distinct()
    assert len(token_requests) <= 1
    assert len(emu.sessions) + len(emu.rejections) - attempts <= 1
    assert w.last_error_kind == "authentication"
    assert "dct_wrong" not in w.last_error


def test_dropped_socket_reconnects_and_replays_the_latest_prompt(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    emu.faults.drop_socket_after = 4.0  # read when a session's socket opens
    w = make_widget(prompt="invert", autostart=True)
    states = Recorder(w, "connection_state")
    widget_page.show(w)
    emu.wait_for_session(baseline, 15)
    emu.faults.drop_socket_after = None  # the reconnect's session stays up

    wait_state(w, "generating")
    w.prompt = "noir"  # set after connecting: the replay must carry it, not the initial prompt
    emu.wait_until(lambda: emu.sessions[baseline].prompts_applied[-1:] == ["noir"], 5)

    wait_for(lambda: "reconnecting" in states.values, 15, "reconnecting after the drop")
    emu.wait_until(lambda: emu.sessions[baseline].end_reason is not None, 5)
    assert emu.sessions[baseline].end_reason == "dropped"
    wait_for(
        lambda: states.distinct()[-1] == "generating" and len(emu.sessions) > baseline + 1,
        20,
        "generating again after the reconnect",
    )
    replay = emu.sessions[baseline + 1]
    assert replay.prompts_applied[0] == "noir"
    seen = states.distinct()
    after_loss = seen[seen.index("reconnecting") :]
    assert after_loss[-1] == "generating" and "disconnected" not in after_loss, seen
    assert w.prompt == "noir"
    widget_page.wait_frames(Frames.noir, what="the noir output after the reconnect")
    assert w.last_error_kind in ("", "connection")


def test_close_ends_the_server_session(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", autostart=True)
    widget_page.show(w)
    wait_state(w, "generating")
    session = emu.wait_for_session(baseline)
    assert session.live

    started = time.monotonic()
    w.close()
    emu.wait_until(
        lambda: emu.sessions[baseline].end_reason is not None, 2.0 - (time.monotonic() - started)
    )
    ended = emu.sessions[baseline]
    assert ended.end_reason == "disconnect", ended
    assert time.monotonic() - started < 2.0
    # the page released the input source and the peer connection too
    wait_for(
        lambda: (
            widget_page.page.evaluate(
                "[...document.querySelectorAll('video')].every(v => !v.srcObject ||"
                " v.srcObject.getTracks().every(t => t.readyState === 'ended'))"
            )
            or widget_page.count() == 0
        ),
        5,
        "the page to release its media",
    )


def test_stop_and_start_from_python(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert")
    widget_page.show(w)
    assert widget_page.text(".dw-pill") == "Stopped"
    assert w.connection_state == "disconnected"

    w.start()
    wait_state(w, "generating")
    widget_page.wait_frames(Frames.inverted, what="the inverted output")
    assert len(emu.sessions) == baseline + 1, emu.sessions[baseline:]
    w.stop()
    wait_state(w, "disconnected", 5)
    emu.wait_until(lambda: emu.sessions[baseline].end_reason is not None, 2.0)
    assert widget_page.text(".dw-pill") == "Stopped"
    assert w.last_error == ""

    w.prompt = "noir"  # set while stopped: the next session starts with it
    w.start()
    wait_state(w, "generating")
    emu.wait_until(lambda: len(emu.sessions) > baseline + 1, 5)
    assert emu.sessions[baseline + 1].prompts_applied[0] == "noir"
    widget_page.wait_frames(Frames.noir, what="the noir output")


def test_camera_source_with_the_fake_device(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    w = make_widget(prompt="invert", source="camera")
    assert w.source == "camera"
    widget_page.show(w)
    overlay = widget_page.root().locator(".dw-overlay")
    assert overlay.inner_text() == "Start camera"

    w.start()
    wait_state(w, "generating")
    frames = widget_page.wait_frames(Frames.inverted, what="the inverted camera picture")
    assert frames.input is not None and frames.input.width > 0
    assert not overlay.is_visible()
    # once the camera runs, the device picker lists the fake camera
    wait_for(
        lambda: widget_page.root().locator(".dw-device option").count() >= 2,
        5,
        "the camera list",
    )


def test_mirrored_camera_is_drawn_by_the_capture_asset(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    """mirror=True's canvas lives in sources.js (capture_sources.ts), loaded when it starts."""
    w = make_widget(prompt="invert", source="camera", mirror=True)
    widget_page.show(w)
    w.start()
    wait_state(w, "generating")
    frames = widget_page.wait_frames(Frames.inverted, what="the inverted mirrored camera")
    assert frames.input is not None and frames.input.width > 0
    assert w.last_error == ""


def test_a_refused_camera_says_what_to_do(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    """The words of a camera failure come from the capture asset (sources.ts cameraFailure)."""
    w = make_widget(prompt="invert", source="camera")
    widget_page.show(w)
    widget_page.page.evaluate(
        "() => { navigator.mediaDevices.getUserMedia = () =>"
        " Promise.reject(new DOMException('denied', 'NotAllowedError')); }"
    )
    w.start()
    wait_for(lambda: w.last_error, 10, "the capture error")
    assert w.last_error_kind == "permission"
    assert "Camera permission denied" in w.last_error
    assert w.connection_state == "disconnected"


def test_screen_source_shares_the_screen(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    """Chromium's fake capture UI picks the whole (fake) screen, as a user's choice would."""
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", source="screen")
    widget_page.show(w)
    overlay = widget_page.root().locator(".dw-overlay")
    assert overlay.inner_text() == "Share screen"

    widget_page.root().locator(".dw-start").click()
    wait_state(w, "generating")
    frames = widget_page.wait_frames(Frames.inverted, what="the inverted screen")
    assert frames.input is not None and frames.input.width > 0
    wait_for(lambda: new_sessions(emu, baseline)[-1].frames_received > 10, 10, "screen frames")
    w.stop()
    wait_for(lambda: new_sessions(emu, baseline)[-1].end_reason is not None, 10, "the end")
    assert w.last_error == ""


def test_video_source_plays_a_file(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator, tmp_path: Any
) -> None:
    video = write_webm(tmp_path / "clip.webm")
    w = make_widget(prompt="invert", source="video", video=tmp_path / "clip.webm", autostart=True)
    assert w.video == video
    widget_page.show(w)
    wait_state(w, "generating")

    frames = widget_page.wait_frames(webm_inverted, what="the inverted video file")
    assert frames.input is not None
    left_in = frames.input.region(0.05, 0.45)
    assert left_in[0] > left_in[1] + 80  # the input preview shows the red half


@pytest.mark.parametrize("host", ["insecure", "vscode"])
def test_no_camera_in_this_page_is_explained(
    host: str, make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    attempts = len(emu.sessions) + len(emu.rejections)
    w = make_widget(prompt="invert", source="camera")
    widget_page.show(w)
    if host == "insecure":
        # what an http:// page that is not localhost looks like to a script
        widget_page.page.evaluate(
            "Object.defineProperty(Navigator.prototype, 'mediaDevices',"
            " {get: () => undefined, configurable: true})"
        )
    else:
        widget_page.page.evaluate("window.acquireVsCodeApi = () => ({})")

    w.start()
    wait_for(lambda: w.last_error, 10, "the capture error")
    banner = widget_page.root().locator(".dw-banner-text")
    banner.wait_for(state="visible")
    text = banner.inner_text()
    if host == "insecure":
        assert w.last_error_kind == "insecure_context"
        assert "HTTPS" in text and "localhost" in text
    else:
        assert w.last_error_kind == "camera"
        assert "VS Code" in text and 'source="video"' in text and 'source="synthetic"' in text
    assert w.connection_state == "disconnected"
    assert widget_page.text(".dw-pill") == "Error"
    assert len(emu.sessions) + len(emu.rejections) == attempts


def test_two_views_share_one_session(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", autostart=True)
    widget_page.show(w, views=2)
    wait_state(w, "generating")
    widget_page.wait_frames(Frames.inverted, what="the first view's output", index=0)
    widget_page.wait_frames(Frames.inverted, what="the second view's output", index=1)
    assert len(new_sessions(emu, baseline)) == 1

    w.prompt = "noir"
    widget_page.wait_frames(Frames.noir, what="the first view turning grey", index=0)
    widget_page.wait_frames(Frames.noir, what="the second view turning grey", index=1)
    assert len(new_sessions(emu, baseline)) == 1
    assert emu.sessions[baseline].prompts_applied == ["invert", "noir"]
    # both views show the same stream: one camera, one peer connection
    same = widget_page.page.evaluate(
        "(() => { const v = [...document.querySelectorAll('.decart-widget .dw-output video')];"
        " return v.length === 2 && v[0].srcObject === v[1].srcObject; })()"
    )
    assert same

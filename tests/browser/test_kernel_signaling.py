"""``RealtimeWidget(signaling="kernel")`` in Chromium against the real emulator.

The browser's protocol frames ride the widget comm; the kernel (this process, under
``solara_test``) relays them to the emulator with the permanent key. Media still flows browser <->
emulator directly, so the pixels show each prompt's effect.

Busy cells: under ``solara_test`` the "kernel" is this process and comm messages are not held back
while the test thread runs, so the busy-cell loop is also run in a real JupyterLab, where a running
cell does hold them back (``test_a_busy_cell_applies_every_prompt_in_jupyterlab``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from browser_kit import Frames, WidgetPage, wait_for

import decart_widget as dw
from decart_widget.images import encode_png
from decart_widget.widget import Reject

Make = Callable[..., dw.RealtimeWidget]


def wait_state(widget: dw.RealtimeWidget, state: str, timeout: float = 20.0) -> None:
    wait_for(
        lambda: widget.connection_state == state,
        timeout,
        f"connection_state == {state!r} (now {widget.connection_state!r}, "
        f"last_error {widget.last_error!r})",
    )


def only_new_session(emu: dw.Emulator, baseline: int) -> Any:
    sessions = emu.sessions[baseline:]
    assert len(sessions) == 1, sessions
    return sessions[0]


class Outbox:
    """Every custom message the widget sends to the front end (still sent)."""

    def __init__(self, widget: dw.RealtimeWidget) -> None:
        self.messages: list[Any] = []
        original = widget.send

        def send(content: Any, buffers: Any = None) -> None:
            self.messages.append(content)
            original(content, buffers)

        widget.send = send  # type: ignore[method-assign]


def test_kernel_mode_reaches_generating_and_shows_the_effect(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", signaling="kernel", autostart=True)
    widget_page.show(w)
    wait_state(w, "generating")
    widget_page.wait_frames(Frames.inverted, what="the inverted output")
    session = only_new_session(emu, baseline)
    assert session.key_kind == "permanent"  # the kernel's key, not a client token
    assert session.prompts_applied == ["invert"]
    wait_for(lambda: w.session_id == session.id, 10, "session_id")
    wait_for(lambda: w.usage and w.usage[-1].seconds >= 1, 10, "usage seconds")
    (usage,) = w.usage
    assert usage.id == session.id and usage.model == "lucy-2.1" and usage.live
    assert w.last_error == ""


def test_prompts_from_python_apply_in_turn_and_a_burst_applies_the_last(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", signaling="kernel", autostart=True)
    widget_page.show(w)
    widget_page.wait_frames(Frames.inverted, 20, "the inverted output")

    # a "busy cell": the test thread sets prompts and sleeps
    for prompt, check in (("Film noir", Frames.noir), ("invert", Frames.inverted)):
        w.prompt = prompt
        time.sleep(1.0)
        widget_page.wait_frames(check, what=f"the {prompt!r} effect")
    session = only_new_session(emu, baseline)
    assert emu.sessions[baseline].prompts_applied == ["invert", "Film noir", "invert"]

    # 50 changes at once: the last one applies, acks match, no error, no backlog
    for index in range(49):
        w.prompt = f"hue {index}"
    w.prompt = "Film noir"
    widget_page.wait_frames(Frames.noir, what="the last prompt of the burst")
    time.sleep(0.5)
    applied = emu.sessions[baseline].prompts_applied
    assert applied[-1] == "Film noir" and len(applied) < 3 + 50
    burst = applied[3:]
    numbers = [int(p.split()[1]) for p in burst[:-1]]
    assert numbers == sorted(set(numbers))  # in order, never replayed
    assert w.prompt == "Film noir" and w.last_error == ""
    assert emu.sessions[baseline].id == session.id
    assert w.connection_state == "generating"


def test_a_big_image_rides_the_comm_as_a_buffer(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    rng = np.random.default_rng(3)
    big = encode_png(rng.integers(0, 256, (1780, 1780, 3), dtype=np.uint8))
    assert 9_000_000 < len(big) < 10 * 1024 * 1024  # ~9.5 MB
    baseline = len(emu.sessions)
    # the image is part of the browser's handshake: it crosses the comm browser -> kernel
    w = make_widget(prompt="noir", image=big, signaling="kernel", autostart=True)
    widget_page.show(w)
    wait_state(w, "generating", 40)
    session = only_new_session(emu, baseline)
    emu.wait_until(lambda: emu.sessions[baseline].images_applied, 20)
    assert emu.sessions[baseline].images_applied == [hashlib.sha256(big).hexdigest()]
    assert session.prompts_applied[:1] == ["noir"]
    # above the limit: a clear error before anything is sent
    with pytest.raises(dw.InvalidInput, match="limit"):
        w.image = b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024)
    assert w.image == big
    assert len(emu.sessions[baseline].images_applied) == 1
    assert w.last_error == ""


def test_a_hook_rejects_a_prompt(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", signaling="kernel", autostart=True)

    @w.on_signal
    def moderate(frame: dict[str, Any], direction: str) -> Any:
        if direction == "to_service" and "volcano" in str(frame.get("prompt") or ""):
            raise Reject("Volcanoes are off limits in this class")
        return None

    widget_page.show(w)
    widget_page.wait_frames(Frames.inverted, 20, "the inverted output")
    w.prompt = "an erupting volcano"
    wait_for(lambda: w.prompt == "invert", 10, "the prompt to revert")
    wait_for(lambda: "Volcanoes" in w.last_error, 10, "last_error")
    assert w.last_error_kind == "moderation"
    wait_for(lambda: "Volcanoes" in widget_page.root().inner_text(), 10, "the error in the view")
    assert widget_page.root().locator(".dw-prompt").input_value() == "invert"
    widget_page.wait_frames(Frames.inverted, what="the previous effect kept")
    assert "an erupting volcano" not in emu.sessions[baseline].prompts_applied
    assert w.connection_state == "generating"


def test_the_views_prompt_box_goes_through_the_kernel(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", signaling="kernel", autostart=True)
    widget_page.show(w)
    widget_page.wait_frames(Frames.inverted, 20, "the inverted output")
    box = widget_page.root().locator(".dw-prompt")
    box.fill("Film noir")
    box.press("Enter")
    widget_page.wait_frames(Frames.noir, what="the noir output after typing")
    wait_for(lambda: w.prompt == "Film noir", 10, "the traitlet to follow the box")
    assert emu.sessions[baseline].prompts_applied == ["invert", "Film noir"]
    w.stop()
    wait_state(w, "disconnected")
    emu.wait_until(lambda: not emu.sessions[baseline].live, 5)
    assert w.usage[-1].end_reason == "closed"


def test_no_secret_in_the_page_the_state_or_the_messages(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    w = make_widget(prompt="invert", signaling="kernel")
    outbox = Outbox(w)
    widget_page.show(w)
    w.start()
    wait_state(w, "generating")
    w.prompt = "Film noir"
    widget_page.wait_frames(Frames.noir, what="the noir output")
    assert any(m.get("type") == "signal" for m in outbox.messages)
    page_text = widget_page.page.content()
    in_browser = widget_page.page.evaluate(
        "() => JSON.stringify({ls: {...localStorage}, ss: {...sessionStorage},"
        " html: document.documentElement.outerHTML})"
    )
    state = {k: v for k, v in w.get_state().items() if not isinstance(v, (bytes, memoryview))}
    everything = (
        page_text + in_browser + json.dumps(outbox.messages, default=str) + json.dumps(state)
    )
    assert emu.api_key not in everything
    assert "ek_" not in json.dumps(outbox.messages) and "api_key" not in json.dumps(outbox.messages)
    assert not any(m.get("type") in ("token", "token_error") for m in outbox.messages)
    assert w.realtime_url == ""


def test_upstream_loss_reconnects_and_replays_and_close_ends_both_sides(
    make_widget: Make, widget_page: WidgetPage, emu: dw.Emulator
) -> None:
    baseline = len(emu.sessions)
    w = make_widget(prompt="invert", signaling="kernel", autostart=True)
    widget_page.show(w)
    widget_page.wait_frames(Frames.inverted, 20, "the inverted output")
    w.prompt = "Film noir"
    widget_page.wait_frames(Frames.noir, what="the noir output")

    emu.drop_connections()
    wait_for(lambda: len(emu.sessions) >= baseline + 2, 20, "a new session after the loss")
    wait_state(w, "generating", 30)
    # the new session runs the latest prompt (from the browser's handshake or the kernel)
    emu.wait_until(lambda: emu.sessions[-1].prompts_applied[-1:] == ["Film noir"], 10)
    widget_page.wait_frames(Frames.noir, 20, "the noir output after reconnecting")
    assert [u.end_reason for u in w.usage][:1] == ["lost"] and w.usage[-1].live

    last = emu.sessions[-1]
    assert last.live
    started = time.monotonic()
    w.close()
    emu.wait_until(lambda: not emu.sessions[-1].live, 2)
    assert time.monotonic() - started < 2.5
    assert w.usage[-1].end_reason == "closed"


# ---- a real JupyterLab: a busy cell holds browser -> kernel messages back ------------------------


@pytest.fixture(scope="module")
def lab(emulator: dw.Emulator) -> Iterator[Any]:
    jupyter_servers = pytest.importorskip("jupyter_servers")
    env = jupyter_servers.kernels_use(emulator)
    with jupyter_servers.JupyterServer("lab", env=env) as server:
        yield server


BUSY_PROMPTS = ["Film noir", "invert", "pencil sketch", "cartoon"]


def test_a_busy_cell_applies_every_prompt_in_jupyterlab(
    lab: Any, page: Any, emulator: dw.Emulator
) -> None:
    from jupyter_servers import JupyterPage, write_notebook

    emulator.faults.reset()
    baseline = len(emulator.sessions)
    write_notebook(
        lab.root_dir / "busy.ipynb",
        [
            "import decart_widget as dw\n"
            "w = dw.RealtimeWidget(prompt='invert', signaling='kernel', source='synthetic',"
            " autostart=True)\nw",
            "import time\n"
            f"for p in {BUSY_PROMPTS!r}:\n"
            "    w.prompt = p\n"
            "    time.sleep(3)\n"
            "print('BUSY DONE', w.connection_state, repr(w.last_error))",
        ],
    )
    ui = JupyterPage(page, lab)
    ui.open("busy.ipynb")
    ui.run_cell(0)
    wait_for(
        lambda: len(emulator.sessions) > baseline and emulator.sessions[-1].frames_sent > 10,
        60,
        "the widget to generate",
    )
    session_id = emulator.sessions[-1].id
    ui.run_cell(1)
    # while the cell is busy every prompt reaches the service, each in turn
    for index in range(len(BUSY_PROMPTS)):
        emulator.wait_until(lambda i=index: len(emulator.sessions[-1].prompts_applied) >= i + 2, 10)
        if index < len(BUSY_PROMPTS) - 1:
            assert "BUSY DONE" not in ui.output_text(1)  # the cell is still running
    wait_for(lambda: "BUSY DONE" in ui.output_text(1), 30, "the busy cell to finish")
    assert "generating" in ui.output_text(1) and "''" in ui.output_text(1)
    session = emulator.sessions[-1]
    assert session.id == session_id and session.live
    assert session.prompts_applied == ["invert", *BUSY_PROMPTS]

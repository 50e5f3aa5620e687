"""The kernel relay with real sockets: a widget in ``signaling="kernel"`` mode and the emulator.

No browser: `FakeFront` plays the front end's `KernelTransport` (custom messages in, the
widget's ``send`` captured), so the relay thread, the upstream WebSocket and the emulator are real.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import decart_widget as dw
from decart_widget.images import encode_png
from decart_widget.widget import Reject


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


class FakeFront:
    """The browser side of kernel signaling, driven from the test."""

    def __init__(self, widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch) -> None:
        self.widget = widget
        self.messages: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.conn = 0
        monkeypatch.setattr(widget, "send", self._capture)

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        with self.cond:
            self.messages.append(content)
            self.cond.notify_all()

    def post(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.widget._on_frontend_message(self.widget, content, buffers or [])

    def open(self, handshake: dict[str, Any] | None = None) -> int:
        self.conn += 1
        self.post({"type": "signal_open", "id": self.conn, "model": self.widget.model})
        self.wait(lambda m: m["type"] == "signal_opened" and m["id"] == self.conn)
        if handshake is not None:
            self.signal(handshake)
            self.wait_frame(lambda f: f["type"] in ("prompt_ack", "set_image_ack"))
        return self.conn

    def signal(self, frame: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.post({"type": "signal", "id": self.conn, "frame": frame}, buffers)

    def close(self, code: int = 1000) -> None:
        self.post({"type": "signal_close", "id": self.conn, "code": code, "reason": ""})

    def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such message; got {self.summary()}")
                self.cond.wait(left)

    def frames(self) -> list[dict[str, Any]]:
        with self.cond:
            return [
                m["frame"]
                for m in self.messages
                if m["type"] == "signal" and m["id"] == self.conn and isinstance(m["frame"], dict)
            ]

    def wait_frame(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        message = self.wait(
            lambda m: (
                m["type"] == "signal"
                and m["id"] == self.conn
                and isinstance(m["frame"], dict)
                and predicate(m["frame"])
            ),
            timeout,
        )
        frame: dict[str, Any] = message["frame"]
        return frame

    def summary(self) -> str:
        return json.dumps(self.messages, default=str)[:2000]


def kernel_widget(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> tuple[dw.RealtimeWidget, FakeFront]:
    widget = dw.RealtimeWidget(backend=emulator, signaling="kernel", **kwargs)
    return widget, FakeFront(widget, monkeypatch)


def latest(emulator: dw.Emulator) -> dw.emulator.EmulatedSession:
    return max(emulator.sessions, key=lambda r: r.started_at)


def test_handshake_and_python_prompts_reach_the_service_in_turn(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        ack = front.wait_frame(lambda f: f["type"] == "prompt_ack")
        assert ack == {"type": "prompt_ack", "prompt": "Anime", "success": True, "error": None}
        record = latest(emulator)
        for prompt in ("noir film", "pencil sketch", "invert colours"):
            w.prompt = prompt  # no front-end message needed: the kernel sends it
            front.wait_frame(lambda f, p=prompt: f["type"] == "prompt_ack" and f["prompt"] == p)
        emulator.wait_until(lambda: len(latest(emulator).prompts_applied) == 4)
        assert latest(emulator).id == record.id
        assert latest(emulator).prompts_applied == [
            "Anime",
            "noir film",
            "pencil sketch",
            "invert colours",
        ]
        assert w.last_error == ""
    finally:
        w.close()


def test_the_widgets_resolution_reaches_the_service_url(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime", resolution="1080p")
    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        assert latest(emulator).resolution == "1080p"
    finally:
        w.close()


def test_a_burst_of_fifty_applies_the_last_without_backlog(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        for index in range(50):
            w.prompt = f"hue shift {index}"
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "hue shift 49")
        applied = latest(emulator).prompts_applied
        assert applied[-1] == "hue shift 49"
        # one in flight at a time, the latest queued: a few, in order, never a backlog
        numbers = [int(p.rsplit(" ", 1)[1]) for p in applied[1:]]
        assert numbers == sorted(set(numbers)) and len(numbers) < 50
        time.sleep(0.3)
        assert latest(emulator).prompts_applied == applied
        assert all(f["success"] for f in front.frames() if f["type"] == "prompt_ack")
        assert w.last_error == ""
    finally:
        w.close()


def test_the_views_set_messages_are_the_kernels_own_changes(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the prompt box, the enhance box and the image picker send in kernel mode."""
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    seen: list[str] = []

    @w.on_signal
    def watch(frame: dict[str, Any], direction: str) -> None:
        if direction == "to_service" and frame["type"] == "prompt":
            seen.append(frame["prompt"])

    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        front.post({"type": "set", "state": {"prompt": "Film noir"}, "buffer_keys": []})
        assert w.prompt == "Film noir"  # the traitlet follows at once
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "Film noir")
        for index in range(50):
            front.post({"type": "set", "state": {"prompt": f"hue shift {index}"}})
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "hue shift 49")
        assert latest(emulator).prompts_applied[-1] == "hue shift 49"
        assert len(latest(emulator).prompts_applied) < 50
        assert seen == latest(emulator).prompts_applied  # the hooks saw every frame sent
        png = encode_png(np.full((8, 8, 3), 90, dtype=np.uint8))
        front.post({"type": "set", "state": {"enhance": False}, "buffer_keys": ["image"]}, [png])
        assert (w.enhance, w.image) == (False, png)
        emulator.wait_until(lambda: len(latest(emulator).images_applied) == 1)
        assert latest(emulator).images_applied == [hashlib.sha256(png).hexdigest()]
        # a value the traitlet refuses changes nothing, is never sent, and the view says why
        front.post({"type": "set", "state": {"prompt": "x" * 10_001, "enhance": True}})
        assert (w.prompt, w.enhance) == ("hue shift 49", False)
        assert "10,000" in w.last_error and w.last_error_kind == "invalid_input"
        # only these three: the rest of the state is not the view's to set this way
        front.post({"type": "set", "state": {"realtime_url": "ws://evil.example"}})
        assert w.realtime_url == ""
    finally:
        w.close()


def test_images_travel_as_binary_buffers_and_python_images_are_sent_by_the_kernel(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    big = encode_png(rng.integers(0, 256, (1780, 1780, 3), dtype=np.uint8))
    assert 9_000_000 < len(big) < 10 * 1024 * 1024
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime", image=big)
    try:
        front.open()
        front.signal({"type": "set_image", "prompt": "Anime", "enhance_prompt": True}, [big])
        ack = front.wait_frame(lambda f: f["type"] == "set_image_ack", timeout=30)
        assert ack["success"], ack
        assert latest(emulator).images_applied == [hashlib.sha256(big).hexdigest()]
        small = encode_png(np.full((8, 8, 3), 200, dtype=np.uint8))
        w.image = small
        emulator.wait_until(lambda: len(latest(emulator).images_applied) == 2, 30)
        assert latest(emulator).images_applied[-1] == hashlib.sha256(small).hexdigest()
        with pytest.raises(dw.InvalidInput, match="limit"):
            w.image = b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024)
        # an oversized buffer from the front end is refused by the kernel, never sent
        front.signal({"type": "set_image", "prompt": None}, [b"\x89PNG" + bytes(11 * 2**20)])
        failed = front.wait_frame(lambda f: f["type"] == "set_image_ack" and not f["success"])
        assert "limit is 10 MB" in failed["error"]
        assert len(latest(emulator).images_applied) == 2
    finally:
        w.close()


def test_a_hook_rejects_a_prompt_the_widget_reverts_and_says_why(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    seen: list[tuple[str, str]] = []

    @w.on_signal
    def moderate(frame: dict[str, Any], direction: str) -> Any:
        seen.append((direction, frame["type"]))
        if frame["type"] == "prompt" and "forbidden" in frame["prompt"]:
            return Reject("Prompts about forbidden things are not allowed here")
        return None

    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        w.prompt = "a forbidden prompt"
        failed = front.wait_frame(lambda f: f["type"] == "prompt_ack" and not f["success"])
        assert failed["prompt"] == "a forbidden prompt"
        assert failed["error"] == "Prompts about forbidden things are not allowed here"
        deadline = time.monotonic() + 5
        while w.prompt != "Anime" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w.prompt == "Anime"
        assert "forbidden" in w.last_error and w.last_error_kind == "moderation"
        assert "a forbidden prompt" not in latest(emulator).prompts_applied
        assert ("to_service", "prompt") in seen and ("to_browser", "prompt_ack") in seen
        # the next prompt goes through
        w.prompt = "noir"
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "noir")
    finally:
        w.close()


def test_hooks_modify_and_drop_frames(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="anime")

    def rewrite(frame: dict[str, Any], direction: str) -> Any:
        if direction == "to_service" and frame["type"] == "prompt":
            return {**frame, "prompt": frame["prompt"] + ", high quality"}
        if direction == "to_browser" and frame["type"] == "generation_tick":
            return False
        return None

    w.on_signal(rewrite)
    try:
        front.open({"type": "prompt", "prompt": "anime", "enhance_prompt": True})
        # the browser's core matches acks by its own text: the relay maps it back
        ack = front.wait_frame(lambda f: f["type"] == "prompt_ack")
        assert ack["prompt"] == "anime" and ack["success"]
        assert latest(emulator).prompts_applied == ["anime, high quality"]
        w.prompt = "noir"
        emulator.wait_until(lambda: latest(emulator).prompts_applied[-1] == "noir, high quality")
        ack = front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] != "anime")
        assert ack["prompt"] == "noir"  # the browser hears of the widget's text
        time.sleep(0.3)
        assert latest(emulator).prompts_applied.count("noir, high quality") == 1  # no loop
        w.on_signal(rewrite, remove=True)
    finally:
        w.close()


def test_hooks_given_to_the_mode_object_run_for_every_widget_of_it(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rewrite(frame: dict[str, Any], direction: str) -> Any:
        if direction == "to_service" and frame["type"] == "prompt":
            return {**frame, "prompt": frame["prompt"] + ", high quality"}
        return None

    mode = dw.Kernel(hooks=[rewrite])
    first = dw.RealtimeWidget(backend=emulator, signaling=mode, prompt="anime")
    second = dw.RealtimeWidget(backend=emulator, signaling=mode, prompt="noir")
    try:
        second.on_signal(rewrite, remove=True)  # one widget's hooks are its own
        for widget, applied in ((first, "anime, high quality"), (second, "noir")):
            front = FakeFront(widget, monkeypatch)
            front.open({"type": "prompt", "prompt": widget.prompt, "enhance_prompt": True})
            emulator.wait_until(lambda a=applied: latest(emulator).prompts_applied == [a])
            front.close()
        assert mode.hooks == (rewrite,)
    finally:
        first.close()
        second.close()


def test_no_secret_reaches_the_front_end(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    try:
        front.post({"type": "token_request", "id": 1})
        refused = front.wait(lambda m: m["type"] == "token_error")
        assert "api_key" not in refused
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        w.prompt = "noir"
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "noir")
        state = {k: v for k, v in w.get_state().items() if not isinstance(v, (bytes, memoryview))}
        everything = json.dumps(state, default=str) + front.summary() + repr(w)
        assert emulator.api_key not in everything
        assert "ek_" not in everything and "api_key=" not in everything
        assert w.realtime_url == ""  # the browser does not even learn the service's address
    finally:
        w.close()


def test_close_ends_the_service_session_and_the_usage_ledger_records_it(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
    record = latest(emulator)
    assert record.live
    (usage,) = w.usage
    assert usage.live and usage.model == "lucy-2.1"  # its id comes with session_id
    started = time.monotonic()
    w.close()
    emulator.wait_until(lambda: not latest(emulator).live, 2)
    assert time.monotonic() - started < 2
    (usage,) = w.usage
    assert usage.end_reason == "closed" and usage.ended_at is not None


def test_upstream_loss_is_reported_and_a_new_open_is_a_new_session(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    try:
        first = front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        w.prompt = "noir"
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == "noir")
        emulator.drop_connections()
        closed = front.wait(lambda m: m["type"] == "signal_closed" and m["id"] == first)
        assert closed["code"] not in (1000, None)
        # the front end reconnects with its (stale) handshake; the kernel brings it up to date
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        emulator.wait_until(lambda: latest(emulator).prompts_applied == ["Anime", "noir"])
        assert [u.end_reason for u in w.usage] == ["lost", None]
        front.close()
        emulator.wait_until(lambda: not latest(emulator).live, 2)
        assert w.usage[-1].end_reason == "closed"
    finally:
        w.close()


def test_a_refused_connection_is_reported_with_a_classifiable_reason(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = dw.Decart(
        api_key="dct_wrong_key_123", api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    w = dw.RealtimeWidget(backend=backend, signaling="kernel")
    front = FakeFront(w, monkeypatch)
    try:
        front.post({"type": "signal_open", "id": 1, "model": "lucy-2.1"})
        closed = front.wait(lambda m: m["type"] == "signal_closed")
        text = json.dumps(closed)
        assert "dct_wrong_key_123" not in text
        assert closed["code"] is None or closed["code"] >= 1000
        assert w.usage[-1].end_reason in ("refused", "lost", "closed")
    finally:
        w.close()


def test_on_signal_needs_kernel_mode(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    with pytest.raises(dw.InvalidInput, match="kernel"):
        w.on_signal(lambda frame, direction: None)
    assert w.usage == []


def test_default_logging_is_short_and_keeps_secrets(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="decart_widget.widget.relay")
    long_prompt = "anime " + "x" * 200
    w, front = kernel_widget(emulator, monkeypatch, prompt="Anime")
    try:
        front.open({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
        w.prompt = long_prompt
        front.wait_frame(lambda f: f["type"] == "prompt_ack" and f["prompt"] == long_prompt)
        w.image = encode_png(np.full((8, 8, 3), 90, dtype=np.uint8))
        front.wait_frame(lambda f: f["type"] == "set_image_ack")
    finally:
        w.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "x" * 80 not in text and "anime " + "x" * 74 in text  # cut to 80 characters
    assert "image (kernel)" in text and "MB" in text
    assert "generation_tick" not in text
    assert emulator.api_key not in text and "ended: closed" in text

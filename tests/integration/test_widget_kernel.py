"""The kernel side of RealtimeWidget, with the real emulator: traitlets, validation, tokens.

No browser here (tests/browser/ drives the front end); the front end's custom messages are fed
to the widget as the comm would deliver them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import traitlets

import decart_widget as dw
from decart_widget.images import encode_png


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


class Sent:
    """Collects what the widget sends to the front end."""

    def __init__(self, widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[dict[str, Any]] = []
        monkeypatch.setattr(
            widget, "send", lambda content, buffers=None: self.messages.append(content)
        )


def request_token(widget: dw.RealtimeWidget, request_id: int = 1) -> None:
    widget._on_frontend_message(widget, {"type": "token_request", "id": request_id}, [])


def test_defaults_follow_the_backend_and_model(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(prompt="Anime style", backend=emulator)
    assert w.model == "lucy-2.1"
    assert w.model_spec == {"name": "lucy-2.1", "width": 1088, "height": 624, "fps": 30}
    assert w.realtime_url == emulator.realtime_url
    assert w.ice_servers == []
    assert "emulator" in w.note.lower()
    assert (w.connection_state, w.generation_seconds, w.last_error) == ("disconnected", 0, "")
    w.model = "lucy-2.5"
    assert w.model_spec["width"] == 1280


def test_custom_models_and_unknown_ones(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(model=dw.RealtimeModel("my-model", 640, 360, 24), backend=emulator)
    assert w.model_spec == {"name": "my-model", "width": 640, "height": 360, "fps": 24}
    with pytest.raises(dw.InvalidInput, match="unknown model 'nope'"):
        w.model = "nope"
    with pytest.raises(dw.InvalidInput, match="unknown model"):
        dw.RealtimeWidget(model="nope", backend=emulator)


def test_bad_arguments_are_refused_clearly(emulator: dw.Emulator) -> None:
    with pytest.raises(TypeError, match="promt"):
        dw.RealtimeWidget(promt="typo", backend=emulator)  # type: ignore[call-arg]
    with pytest.raises(dw.InvalidInput, match="signaling must be one of"):
        dw.RealtimeWidget(signaling="carrier-pigeon", backend=emulator)
    with pytest.raises(dw.InvalidInput, match="source must be one of"):
        dw.RealtimeWidget(source="webcam", backend=emulator)
    with pytest.raises(dw.InvalidInput, match="needs video="):
        dw.RealtimeWidget(source="video", backend=emulator)
    with pytest.raises(dw.InvalidInput, match="proxy_url"):
        dw.RealtimeWidget(signaling="proxy")
    with pytest.raises(dw.InvalidInput, match="max_session_seconds"):
        dw.RealtimeWidget(max_session_seconds=0, backend=emulator)


def test_images_are_checked_and_converted(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    w.set_image(np.zeros((8, 8, 3), dtype=np.uint8))
    assert w.image is not None and w.image.startswith(b"\x89PNG")
    w.set_image(None)
    assert w.image is None
    with pytest.raises(dw.InvalidInput, match="not a PNG"):
        w.image = b"plain text"
    with pytest.raises(dw.InvalidInput, match="limit"):
        w.image = b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024)
    w.image = encode_png(np.ones((4, 4, 3), dtype=np.uint8))
    assert w.image is not None


def test_token_requests_get_a_scoped_client_token_by_message(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator, max_session_seconds=120)
    sent = Sent(w, monkeypatch)
    request_token(w, 7)
    request_token(w, 8)
    first, second = sent.messages
    assert first["type"] == "token" and first["id"] == 7
    assert first["api_key"].startswith("ek_")
    assert first["api_key"] != second["api_key"]  # a fresh token for every (re)connect
    assert first["realtime_url"] == emulator.realtime_url


def test_the_permanent_key_never_reaches_the_front_end(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(prompt="Anime", backend=emulator)
    sent = Sent(w, monkeypatch)
    request_token(w)
    state = {k: v for k, v in w.get_state().items() if not isinstance(v, (bytes, memoryview))}
    everything = json.dumps(state, default=str) + json.dumps(sent.messages) + repr(w)
    assert emulator.api_key not in everything
    # and the client token is not in the (notebook-saved) state either
    assert sent.messages[0]["api_key"] not in json.dumps(state, default=str)


def test_a_refused_key_reaches_the_front_end_as_a_typed_error(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = dw.Decart(
        api_key="dct_wrong", api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    w = dw.RealtimeWidget(backend=backend)
    sent = Sent(w, monkeypatch)
    request_token(w, 3)
    (message,) = sent.messages
    assert message["type"] == "token_error" and message["id"] == 3
    assert message["kind"] == "authentication"
    assert "dct_wrong" not in json.dumps(message)


def test_start_stop_and_error_property(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    sent = Sent(w, monkeypatch)
    w.start()
    w.stop()
    assert sent.messages == [{"type": "start"}, {"type": "stop"}]
    assert w.error is None
    w.last_error, w.last_error_kind = "Prompt rejected by moderation", "moderation"
    assert isinstance(w.error, dw.ModerationError)


def test_default_backend_is_the_shared_emulator_without_a_key(no_key: None) -> None:
    first = dw.RealtimeWidget()
    second = dw.RealtimeWidget()
    assert first.backend is second.backend
    assert isinstance(first.backend, dw.Emulator)
    assert "emulator" in first.note.lower()


def test_a_key_in_the_environment_selects_decart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECART_API_KEY", "dct_envkey_0000")
    monkeypatch.delenv("DECART_REALTIME_URL", raising=False)
    w = dw.RealtimeWidget()
    assert isinstance(w.backend, dw.Decart)
    assert w.realtime_url == "wss://api3.decart.ai"
    assert w.ice_servers == [{"urls": "stun:stun.l.google.com:19302"}]
    assert w.note == ""


def test_front_end_reports_update_the_traitlets(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(prompt="Anime", backend=emulator)
    png = encode_png(np.zeros((4, 4, 3), dtype=np.uint8))
    report = {
        "type": "report",
        "state": {
            "connection_state": "generating",
            "generation_seconds": 12,
            "prompt": "Anime style",
            "realtime_url": "ws://evil.example",  # kernel-owned: ignored
        },
        "buffer_keys": ["image"],
    }
    w._on_frontend_message(w, report, [memoryview(png)])
    assert (w.connection_state, w.generation_seconds, w.prompt) == ("generating", 12, "Anime style")
    assert w.image == png
    assert w.realtime_url == emulator.realtime_url
    # a bad value from the page is ignored, not raised into the comm handler
    w._on_frontend_message(w, {"type": "report", "state": {}, "buffer_keys": ["image"]}, [b"junk"])
    assert w.image == png


def test_media_transport_resolution_and_queue_traits(emulator: dw.Emulator) -> None:
    w = dw.RealtimeWidget(backend=emulator, transport="livekit", resolution="1080p")
    state = w.get_state()
    assert (state["transport"], state["resolution"]) == ("livekit", "1080p")
    assert (w.queue_position, w.queue_size) == (None, None)
    assert "transport='livekit'" in repr(w)
    with pytest.raises(traitlets.TraitError, match="read-only"):
        w.transport = "webrtc"  # type: ignore[assignment]
    with pytest.raises(dw.InvalidInput, match="transport must be one of livekit, webrtc"):
        dw.RealtimeWidget(backend=emulator, transport="sfu")
    with pytest.raises(dw.InvalidInput, match="resolution must be one of 720p, 1080p"):
        dw.RealtimeWidget(backend=emulator, resolution="4k")
    assert dw.RealtimeWidget(backend=emulator).resolution is None
    # the front end reports the queue; None again once the session is through it
    report = {"type": "report", "state": {"queue_position": 3, "queue_size": 7}}
    w._on_frontend_message(w, report, [])
    assert (w.queue_position, w.queue_size) == (3, 7)
    cleared = {"type": "report", "state": {"queue_position": None, "queue_size": None}}
    w._on_frontend_message(w, cleared, [])
    assert (w.queue_position, w.queue_size) == (None, None)
    # what the front end may not report
    w._on_frontend_message(w, {"type": "report", "state": {"transport": "webrtc"}}, [])
    assert w.transport == "livekit"


def test_the_livekit_asset_is_sent_on_request(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decart_widget.widget._widget import STATIC

    w = dw.RealtimeWidget(backend=emulator, transport="livekit")
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append((content, buffers)))
    w._on_frontend_message(w, {"type": "asset_request", "name": "livekit"}, [])
    asset = (STATIC / "livekit.js").read_bytes()
    assert [header["type"] for header, _ in sent] == ["asset"] * len(sent)
    assert b"".join(buffers[0] for _, buffers in sent) == asset
    assert b"inference-server-" in asset and b"livekit" in asset
    sent.clear()
    w._on_frontend_message(w, {"type": "asset_request", "name": "secrets"}, [])
    assert [header["type"] for header, _ in sent] == ["asset_error"]

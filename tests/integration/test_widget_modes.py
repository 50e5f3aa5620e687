"""RealtimeWidget with signaling mode objects, against the real emulator: what the front end is
told and how its token requests are answered, per mode, whether the mode came as an object, a
string or the old keywords."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import decart_widget as dw
from decart_widget.protocol._urls import build_stream_url


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


def token_answer(widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: sent.append(content))
    widget._on_frontend_message(widget, {"type": "token_request", "id": 5}, [])
    (answer,) = sent
    assert answer["id"] == 5
    return answer


def test_direct_as_an_object_mints_tokens_with_its_own_scope(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = dw.Direct(token_seconds=5, max_session_seconds=120)
    w = dw.RealtimeWidget(backend=emulator, signaling=mode)
    assert (w.signaling, w.realtime_url) == ("direct", emulator.realtime_url)
    assert w.signaling_mode == mode
    before = dt.datetime.now(dt.timezone.utc)
    answer = token_answer(w, monkeypatch)
    assert answer["type"] == "token" and answer["api_key"].startswith("ek_")
    assert answer["realtime_url"] == emulator.realtime_url
    expires = dt.datetime.fromisoformat(answer["expires_at"])
    assert expires - before < dt.timedelta(seconds=30)  # 5 s asked, not the default 60


def test_the_string_and_the_old_keywords_make_the_same_widget_as_the_object(
    emulator: dw.Emulator,
) -> None:
    by_name = dw.RealtimeWidget(backend=emulator, signaling="direct", token_seconds=30)
    by_object = dw.RealtimeWidget(backend=emulator, signaling=dw.Direct(token_seconds=30))
    assert by_name.signaling_mode == by_object.signaling_mode
    assert by_name.get_state(["signaling", "realtime_url"]) == by_object.get_state(
        ["signaling", "realtime_url"]
    )
    assert dw.RealtimeWidget(backend=emulator).signaling_mode == dw.Direct()


def test_kernel_tells_the_front_end_nothing_and_issues_no_tokens(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator, signaling=dw.Kernel())
    try:
        assert (w.signaling, w.realtime_url) == ("kernel", "")
        answer = token_answer(w, monkeypatch)
        assert answer["type"] == "token_error" and answer["kind"] == "invalid_input"
        assert "api_key" not in answer and w.usage == []
    finally:
        w.close()


def test_proxy_needs_no_backend_and_hands_out_the_users_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = dw.RealtimeWidget(signaling=dw.Proxy("wss://proxy.example/", "dwp1.user"))
    assert w.backend is None  # no emulator started, no key needed in the kernel
    assert (w.signaling, w.realtime_url) == ("proxy", "wss://proxy.example")
    answer = token_answer(w, monkeypatch)
    assert answer == {
        "type": "token",
        "id": 5,
        "api_key": "dwp1.user",
        "realtime_url": "wss://proxy.example",
    }
    assert "dwp1.user" not in repr(w) and "dwp1.user" not in str(w.get_state())


def test_one_mode_object_serves_several_widgets(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = dw.Direct(token_seconds=30)
    first = dw.RealtimeWidget(backend=emulator, signaling=mode, model="lucy-2.1")
    second = dw.RealtimeWidget(backend=emulator, signaling=mode, model="lucy-2.5")
    first_token, second_token = (token_answer(w, monkeypatch)["api_key"] for w in (first, second))
    # each widget's token is scoped to that widget's model: the emulator refuses the other one
    assert "not allowed" in refusal(emulator, first_token, "lucy-2.5")
    assert "not allowed" in refusal(emulator, second_token, "lucy-2.1")


def refusal(emulator: dw.Emulator, token: str, model: str) -> str:
    """What the emulator says when ``token`` opens a session of ``model``: its frames until it
    closes the socket, and the close reason."""
    url = build_stream_url(emulator.realtime_url, token, model)
    said: list[str] = []
    with connect(url, open_timeout=10) as socket, pytest.raises(ConnectionClosed) as closed:
        while True:
            said.append(str(socket.recv(timeout=10)))
    assert closed.value.rcvd is not None
    return " ".join([*said, closed.value.rcvd.reason])


def test_mode_arguments_go_in_one_place(emulator: dw.Emulator) -> None:
    with pytest.raises(dw.InvalidInput, match=r"dw.Direct\(token_seconds=\.\.\.\)"):
        dw.RealtimeWidget(backend=emulator, signaling=dw.Direct(), token_seconds=30)
    with pytest.raises(dw.InvalidInput, match='only applies to signaling="direct"'):
        dw.RealtimeWidget(backend=emulator, signaling="kernel", max_session_seconds=60)
    with pytest.raises(dw.InvalidInput, match="user token"):
        dw.RealtimeWidget(signaling="proxy", proxy_url="wss://proxy.example")


def test_the_media_transport_comes_from_the_widget_or_the_mode(emulator: dw.Emulator) -> None:
    assert dw.RealtimeWidget(backend=emulator).transport == "livekit"
    # the default is LiveKit: a mode or the keyword that asks for WebRTC (Gen-A) gets it
    carried = dw.RealtimeWidget(backend=emulator, signaling=dw.Direct(transport="webrtc"))
    assert carried.transport == "webrtc"
    given = dw.RealtimeWidget(backend=emulator, signaling="direct", transport="webrtc")
    assert given.transport == "webrtc"
    both = dw.RealtimeWidget(
        backend=emulator, signaling=dw.Direct(transport="livekit"), transport="livekit"
    )
    assert both.transport == "livekit"
    with pytest.raises(dw.InvalidInput, match="transport='webrtc' contradicts"):
        dw.RealtimeWidget(
            backend=emulator, signaling=dw.Direct(transport="livekit"), transport="webrtc"
        )

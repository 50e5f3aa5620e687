"""``ice_servers=`` end to end: the headless client calls a function before each peer connection
(real aiortc against the emulator), the emulator takes servers for its own peers, the widget
validates its list and calls its function again before every browser (re)connect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import decart_widget as dw
from decart_widget.client import _session as client_session
from decart_widget.emulator._media import MediaPeer
from decart_widget.protocol._errors import InvalidInput

SMALL = dw.RealtimeModel("lucy-2.1", 320, 192, 15)
TURN = {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}


@pytest.fixture
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator(tick_seconds=0.2) as emu:
        yield emu


async def test_the_client_calls_an_async_ice_function_for_its_peer_and_connects(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_session, "default_transport", lambda: "webrtc")
    calls: list[int] = []

    async def fresh() -> list[dict[str, Any]]:
        calls.append(1)
        return []  # loopback needs no server; the call is what is checked

    session = await dw.RealtimeSession.connect(model=SMALL, backend=emulator, ice_servers=fresh)
    try:
        assert session.connection_state in ("connected", "generating")
        assert calls == [1]
    finally:
        await session.disconnect()


def test_the_client_refuses_a_wrong_list_before_connecting() -> None:
    with pytest.raises(InvalidInput, match="TURN server needs"):
        dw.RealtimeSession(model=SMALL, ice_servers=[{"urls": "turn:x:3478"}], transport="webrtc")


async def test_the_emulator_checks_its_servers_and_gives_them_to_its_peers() -> None:
    with pytest.raises(InvalidInput, match="not a stun:"):
        dw.Emulator(ice_servers=[{"urls": "http://x"}])
    emu = dw.Emulator(ice_servers=[TURN])
    assert emu._config.ice_servers == (
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"},
    )
    peer = MediaPeer(
        effect=lambda: None,  # type: ignore[arg-type, return-value]
        on_frame_received=lambda: None,
        on_frame_sent=lambda: None,
        on_state=lambda state: None,
        ice_servers=emu._config.ice_servers,
    )
    try:
        # aiortc keeps the configuration it was given (name-mangled, no public getter)
        (server,) = peer._pc._RTCPeerConnection__configuration.iceServers  # type: ignore[attr-defined]
        assert (server.urls, server.username, server.credential) == (
            ["turn:turn.example.org:3478"],
            "u",
            "p",
        )
    finally:
        await peer.close()


def test_the_widget_sends_its_servers_and_refreshes_a_function_on_every_token_request(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="unknown keys"):
        dw.RealtimeWidget(backend=emulator, ice_servers=[{"url": "stun:x"}])
    w = dw.RealtimeWidget(backend=emulator, ice_servers=[TURN])
    assert w.ice_servers == [
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}
    ]
    issued = iter(range(1, 100))
    w = dw.RealtimeWidget(
        backend=emulator, ice_servers=lambda: [{**TURN, "credential": f"p{next(issued)}"}]
    )
    assert w.ice_servers[0]["credential"] == "p1"
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append(content))
    w._on_frontend_message(w, {"type": "token_request", "id": 1}, [])
    assert w.ice_servers[0]["credential"] == "p2"
    assert sent[-1]["type"] == "token"


def test_an_emulator_on_every_interface_gives_the_browser_its_wildcard_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page fills the wildcard with its own host (js/tests/reach.test.ts): the browser is
    never handed the kernel's loopback for an emulator it may reach."""
    with dw.Emulator(host="0.0.0.0") as emu:
        assert emu.realtime_url == f"ws://127.0.0.1:{emu.port}"  # the kernel's own use
        assert emu.browser_realtime_url == f"ws://0.0.0.0:{emu.port}"
        w = dw.RealtimeWidget(backend=emu)
        assert w.realtime_url == f"ws://0.0.0.0:{emu.port}"
        sent: list[dict[str, Any]] = []
        monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append(content))
        w._on_frontend_message(w, {"type": "token_request", "id": 1}, [])
        assert sent[-1]["realtime_url"] == f"ws://0.0.0.0:{emu.port}"
    with dw.Emulator() as emu:
        assert emu.browser_realtime_url == emu.realtime_url

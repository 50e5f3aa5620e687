"""``ice_servers=`` end to end: the headless client calls a function before each peer connection
(real aiortc against the emulator), the emulator takes servers for its own peers, the widget
validates its list and calls its function again before every browser (re)connect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gen_b_kit
import pytest
import websockets
from livekit.protocol import rtc as proto
from stun_kit import StunServer

import decart_widget as dw
from decart_widget._tokens import TokenMinter
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


# ---- the widget's servers for the emulator's own peers -----------------------------------------


def mint(emulator: dw.Emulator) -> str:
    return TokenMinter(emulator).mint(expires_in=60, reuse=False).api_key


async def test_a_token_bound_to_servers_gives_the_emulators_gen_a_peer_them(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's answering peer asks the STUN server bound to the session's token; the
    client is given none, so every request comes from the emulator."""
    monkeypatch.setattr(client_session, "default_transport", lambda: "webrtc")
    with StunServer() as stun:
        token = mint(emulator)
        emulator.bind_ice_servers(token, [{"urls": stun.url}])
        service = dw.Decart(
            api_key=token, api_url=emulator.api_url, realtime_url=emulator.realtime_url
        )
        session = await dw.RealtimeSession.connect(model=SMALL, backend=service, ice_servers=[])
        try:
            assert stun.requests
        finally:
            await session.disconnect()
    assert emulator.sessions[-1].ice_server_urls == [stun.url]
    assert emulator.sessions[-1].key_kind == "client"


async def test_a_rooms_join_response_offers_the_bound_servers_and_its_peers_use_them(
    emulator: dw.Emulator,
) -> None:
    """Gen-B: LiveKit's join response carries the ICE servers (as LiveKit's server offers its
    TURN servers), and the room's subscriber peer gathers from them before its first offer."""
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}
    with StunServer() as stun:
        token = mint(emulator)
        emulator.bind_ice_servers(token, [{"urls": stun.url}, turn])
        control = await gen_b_kit.connect(emulator, early=True, api_key=token)
        try:
            info = await gen_b_kit.join(control)
            signal_url = f"{info['livekit_url']}/rtc?access_token={info['token']}"
            async with websockets.connect(signal_url, proxy=None) as signal:
                first = proto.SignalResponse.FromString(await signal.recv())
                offered = [
                    (list(server.urls), server.username, server.credential)
                    for server in first.join.ice_servers
                ]
                assert offered == [([stun.url], "", ""), (turn["urls"], "u", "p")]
                second = proto.SignalResponse.FromString(await signal.recv())
                assert second.WhichOneof("message") in ("offer", "refresh_token")
                assert stun.requests  # gathered before the subscriber's offer was sent
        finally:
            await control.ws.close()
    with pytest.raises(InvalidInput, match="not a live client token"):
        emulator.bind_ice_servers("ek_not_minted_here", [{"urls": stun.url}])


def test_an_emulator_given_servers_offers_them_without_a_binding() -> None:
    with dw.Emulator(ice_servers=[{"urls": "stun:127.0.0.1:3478"}]) as emu:
        token = mint(emu)
        auth = emu._services.tokens.authenticate(token)
        assert auth.grant is not None and auth.grant.ice_servers is None
        assert emu._services.config.ice_servers == ({"urls": ["stun:127.0.0.1:3478"]},)


def test_a_direct_widget_binds_what_its_page_has_to_each_token(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = iter(range(1, 100))
    w = dw.RealtimeWidget(
        backend=emulator,
        signaling="direct",
        ice_servers=lambda: [{**TURN, "credential": f"p{next(issued)}"}],
    )
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append(content))
    for request in (1, 2):
        w._on_frontend_message(w, {"type": "token_request", "id": request}, [])
        grant = emulator._services.tokens.authenticate(sent[-1]["api_key"]).grant
        assert grant is not None
        assert list(grant.ice_servers or ()) == w.ice_servers  # the page's own, fresh each time
        assert w.ice_servers[0]["credential"] == f"p{request + 1}"
    plain = dw.RealtimeWidget(backend=emulator, signaling="direct")
    monkeypatch.setattr(plain, "send", lambda content, buffers=None: sent.append(content))
    plain._on_frontend_message(plain, {"type": "token_request", "id": 3}, [])
    grant = emulator._services.tokens.authenticate(sent[-1]["api_key"]).grant
    assert grant is not None and grant.ice_servers is None  # the emulator's own apply


def test_a_kernel_signaling_widget_opens_the_emulator_with_a_token_bound_to_its_servers(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay connects with a client token bound to the widget's servers (the permanent key
    is every widget's); a function is called again for every connection, as for a token."""
    issued = iter(range(1, 100))
    w = dw.RealtimeWidget(
        backend=emulator,
        signaling="kernel",
        ice_servers=lambda: [{"urls": f"stun:127.0.0.{next(issued)}:3478"}],
    )
    plain = dw.RealtimeWidget(backend=emulator, signaling="kernel")
    for widget in (w, plain):
        monkeypatch.setattr(widget, "send", lambda content, buffers=None: None)
    seen = len(emulator.sessions)
    try:
        w._on_frontend_message(w, {"type": "signal_open", "id": 1, "model": w.model}, [])
        emulator.wait_until(lambda: len(emulator.sessions) > seen)
        opened = emulator.sessions[seen]
        assert (opened.key_kind, opened.ice_server_urls) == ("client", ["stun:127.0.0.2:3478"])
        assert w.ice_servers == [{"urls": ["stun:127.0.0.2:3478"]}]
        plain._on_frontend_message(plain, {"type": "signal_open", "id": 1, "model": w.model}, [])
        emulator.wait_until(lambda: len(emulator.sessions) > seen + 1)
        assert (
            emulator.sessions[seen + 1].key_kind,
            emulator.sessions[seen + 1].ice_server_urls,
        ) == (
            "permanent",
            [],
        )
    finally:
        w.close()
        plain.close()

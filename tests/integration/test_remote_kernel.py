"""A browser on another host than the kernel: the widget's defaults, with the real emulator.

The widget's automatic emulator (no ``DECART_API_KEY``) listens on every interface with a key of
its own and is reached through the kernel by default; a LiveKit room's address reaches the page
as the wildcard it fills with its own host; the emulator's media does not hang on the order of
the client's end-of-candidates and its checks, and media that never connects ends within the
bound, saying why. The end-to-end versions, across network namespaces, are in
tests/browser/test_remote_hosts.py; docs/where-it-works.md lists the setups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from test_emulator_kit import ColorTrack, StreamClient, strip_candidates
from test_relay import FakeFront

import decart_widget as dw
from decart_widget._backends import shared_emulator
from decart_widget.emulator import DEFAULT_API_KEY
from decart_widget.widget._kernel_relay import as_the_browser_sees_it


@pytest.fixture(scope="module")
def everywhere() -> Iterator[dw.Emulator]:
    """An emulator on every interface, as the widget's automatic one."""
    with dw.Emulator(host="0.0.0.0") as emu:
        yield emu


# ---- the widget's defaults ---------------------------------------------------------------------


def test_the_automatic_emulator_listens_everywhere_with_a_key_of_its_own(no_key: None) -> None:
    emu = shared_emulator()
    assert emu.host == "0.0.0.0"
    assert emu.browser_realtime_url == f"ws://0.0.0.0:{emu.port}"
    assert emu.api_key != DEFAULT_API_KEY and emu.api_key.startswith("dct_local_")
    assert len(emu.api_key) > 30
    assert emu.api_key not in repr(emu)


def test_the_automatic_emulator_is_reached_through_the_kernel_by_default(no_key: None) -> None:
    w = dw.RealtimeWidget()
    try:
        assert isinstance(w.backend, dw.Emulator)
        assert w.signaling == "kernel" and isinstance(w.signaling_mode, dw.Kernel)
        assert w.realtime_url == ""  # the browser is told nothing: the kernel relays
        # what a page on another host is told (js/src/reach.ts): the cause, the ways out
        assert w.remote_page_help.startswith(
            "The browser cannot reach the local emulator running next to the kernel"
        )
        for way_out in ("DECART_API_KEY", "run Jupyter on this computer", "ice_servers"):
            assert way_out in w.remote_page_help
        assert 'signaling="kernel"' not in w.remote_page_help  # it already is
    finally:
        w.close()


def test_a_choice_or_another_backend_keeps_direct_signaling(
    no_key: None, monkeypatch: pytest.MonkeyPatch, everywhere: dw.Emulator
) -> None:
    chosen = dw.RealtimeWidget(signaling="direct")
    assert chosen.signaling == "direct"
    assert chosen.realtime_url == f"ws://0.0.0.0:{shared_emulator().port}"
    assert dw.RealtimeWidget(token_seconds=30).signaling == "direct"  # a direct-mode keyword
    assert 'signaling="kernel"' in chosen.remote_page_help  # a way out in direct signaling
    given = dw.RealtimeWidget(backend=everywhere)
    assert given.signaling == "direct"
    assert given.remote_page_help == chosen.remote_page_help
    # a LiveKit room needs the emulator's port; given ICE servers, the first way out is to
    # check them
    assert 'transport="webrtc"' in chosen.remote_page_help
    relayed = dw.RealtimeWidget(transport="webrtc", ice_servers=[{"urls": "stun:10.0.0.1"}])
    assert "check that the TURN server in ice_servers is reachable" in relayed.remote_page_help
    assert 'transport="webrtc"' not in relayed.remote_page_help
    relayed.close()
    monkeypatch.setenv("DECART_API_KEY", "dct_envkey_0000")
    keyed = dw.RealtimeWidget()
    assert (keyed.signaling, keyed.remote_page_help) == ("direct", "")
    assert isinstance(keyed.backend, dw.Decart)
    # a service at the kernel's loopback is beside it too
    local = dw.Decart(api_key="dct_x_0000", realtime_url="ws://127.0.0.1:9")
    assert "cannot reach the service running next to the kernel" in (
        dw.RealtimeWidget(backend=local).remote_page_help
    )


# ---- a LiveKit room's address, as the browser must dial it --------------------------------------


def test_the_relay_hands_the_browser_the_rooms_wildcard_address(
    everywhere: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=everywhere, signaling="kernel", transport="livekit")
    front = FakeFront(w, monkeypatch)
    try:
        front.open({"type": "prompt", "prompt": "invert", "enhance_prompt": False})
        front.signal({"type": "livekit_join"})
        info = front.wait_frame(lambda f: f["type"] == "livekit_room_info")
        # the kernel dialled its loopback; the page fills the wildcard with its own host
        assert info["livekit_url"] == f"ws://0.0.0.0:{everywhere.port}"
        assert info["token"] and info["room_name"]
    finally:
        w.close()


def test_only_a_room_at_the_address_the_kernel_dialled_is_rewritten(
    everywhere: dw.Emulator,
) -> None:
    port = everywhere.port
    info: dict[str, Any] = {"type": "livekit_room_info", "token": "t", "room_name": "r"}
    mine = {**info, "livekit_url": f"ws://127.0.0.1:{port}"}
    assert as_the_browser_sees_it(mine, everywhere)["livekit_url"] == f"ws://0.0.0.0:{port}"
    elsewhere = {**info, "livekit_url": "wss://decart.livekit.cloud"}
    assert as_the_browser_sees_it(elsewhere, everywhere) == elsewhere
    other = {"type": "prompt_ack", "livekit_url": f"ws://127.0.0.1:{port}"}
    assert as_the_browser_sees_it(other, everywhere) == other
    with dw.Emulator() as loopback:  # it gives the browser what the kernel uses: unchanged
        same = {**info, "livekit_url": loopback.realtime_url}
        assert as_the_browser_sees_it(same, loopback) == same


# ---- the emulator's media: no race, and a bound --------------------------------------------------


async def test_media_connects_when_the_clients_checks_come_after_its_end_of_candidates() -> None:
    """A browser without camera permission hides its address (mDNS): the emulator learns it only
    from the browser's checks, which may come after the browser's end-of-candidates."""
    with dw.Emulator() as emu:
        client = await StreamClient.connect(emu)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(ColorTrack())
            await pc.setLocalDescription(await pc.createOffer())
            offer, _ = strip_candidates(pc.localDescription.sdp)  # no address of the client
            await client.prompt("invert")
            await client.send({"type": "offer", "sdp": offer})
            await client.send({"type": "ice-candidate", "candidate": None})
            answer = await client.expect("answer")
            # messages are handled in order: once this is acked the end was handled, and an ICE
            # agent told it with nothing to check has failed
            await client.prompt("invert")
            assert client.of_type("error") == [] and client.of_type("generation_ended") == []
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            await client.expect("generation_started")
            assert client.of_type("error") == []
        finally:
            await pc.close()
            await client.ws.close()


async def test_media_that_never_connects_ends_within_the_bound_saying_why() -> None:
    with dw.Emulator(media_connect_seconds=1.0) as emu:
        client = await StreamClient.connect(emu)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(ColorTrack())
            await pc.setLocalDescription(await pc.createOffer())
            offer, _ = strip_candidates(pc.localDescription.sdp)
            await client.prompt("invert")
            await client.send({"type": "offer", "sdp": offer})
            await client.expect("answer")  # never applied: no check ever reaches the emulator
            error = await client.expect("error")
            assert "no media connection within 1 s" in error["error"]
            assert "no media path between the client and the emulator" in error["error"]
            for way_out in ("DECART_API_KEY", "run Jupyter locally", "TURN"):
                assert way_out in error["error"]
            assert (await client.expect("generation_ended"))["reason"] == "error"
            assert await client.wait_closed() == (1011, "peer connection failed")
            await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "error")
        finally:
            await pc.close()


async def test_media_that_a_given_turn_server_does_not_carry_says_so() -> None:
    """With a TURN server among the session's ICE servers, the ways out start with checking it
    (here one that does not answer: the emulator's gathering gives up on it)."""
    turn = {"urls": "turn:127.0.0.1:9", "username": "u", "credential": "p"}
    with dw.Emulator(media_connect_seconds=1.0, ice_servers=[turn]) as emu:
        client = await StreamClient.connect(emu)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(ColorTrack())
            await pc.setLocalDescription(await pc.createOffer())
            offer, _ = strip_candidates(pc.localDescription.sdp)
            await client.send({"type": "offer", "sdp": offer})
            await client.expect("answer", timeout=30)
            error = await client.expect("error")
            assert "no media connection within 1 s" in error["error"]
            assert "not even through the TURN server it was given" in error["error"]
            for way_out in ("DECART_API_KEY", "run Jupyter locally"):
                assert way_out in error["error"]
        finally:
            await pc.close()
            await client.ws.close()


async def test_a_connected_session_is_not_ended_by_the_bound() -> None:
    with dw.Emulator(media_connect_seconds=1.0, tick_seconds=0.25) as emu:
        client = await StreamClient.connect(emu)
        try:
            await client.prompt("invert")
            await client.offer()
            await client.expect("generation_started")
            # ticks keep coming past the bound (each waits for its own message, not a clock)
            ticks = [await client.expect("generation_tick") for _ in range(8)]
            assert ticks[-1]["seconds"] == 8
            assert client.of_type("error") == []
        finally:
            if client.pc is not None:
                await client.pc.close()
            await client.ws.close()


def test_the_bound_is_checked() -> None:
    with pytest.raises(ValueError, match="media_connect_seconds"):
        dw.Emulator(media_connect_seconds=0)
    assert dw.Emulator(media_connect_seconds=None).config.media_connect_seconds is None

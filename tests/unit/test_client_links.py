"""The headless client's media links (`decart_widget.client._links`): one per media transport,
picked by name in one place; `RealtimeSession` only calls the `MediaLink` protocol, so each link
carries out its own generation's media actions and ignores the other's."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from decart_widget.client._links import MEDIA_LINKS, require
from decart_widget.client._sources import SyntheticTrack
from decart_widget.models import RealtimeModel
from decart_widget.protocol import AddRemoteCandidate, ApplyAnswer, JoinRoom, StartPeer
from decart_widget.protocol._constants import MEDIA_TRANSPORTS

MODEL = RealtimeModel("lucy-2.1", 320, 192, 15)
SESSION = Path(__file__).parents[2] / "decart_widget" / "client" / "_session.py"


class Host:
    def __init__(self) -> None:
        self.spawned: list[str] = []

    def media_state(self, state: str) -> None: ...

    def local_offer(self, sdp: str) -> None: ...

    def deliver(self, frame: Any) -> None: ...

    def spawn(self, coro: Any) -> None:
        self.spawned.append(coro.__qualname__)
        coro.close()


def make(transport: str, host: Host) -> Any:
    track = SyntheticTrack(MODEL.width, MODEL.height, MODEL.fps)
    return MEDIA_LINKS[transport](host, track, MODEL, 15.0, [])


def test_every_media_transport_has_a_link() -> None:
    assert set(MEDIA_LINKS) == set(MEDIA_TRANSPORTS)


async def test_the_gen_a_peer_starts_on_start_peer_and_ignores_a_room() -> None:
    host = Host()
    peer = make("webrtc", host)
    await peer.handle(JoinRoom("ws://127.0.0.1:1", "token", "room", "session"))
    assert host.spawned == []
    await peer.handle(StartPeer())
    assert host.spawned == ["PeerLink.start"]
    await peer.close()


async def test_the_gen_b_room_joins_on_join_room_and_ignores_sdp() -> None:
    pytest.importorskip("livekit.rtc")
    host = Host()
    room = make("livekit", host)
    await room.handle(StartPeer())
    await room.handle(ApplyAnswer("v=0"))
    await room.handle(AddRemoteCandidate({"candidate": "", "sdpMid": "0"}))
    assert host.spawned == []
    await room.handle(JoinRoom("ws://127.0.0.1:1", "token", "room", "session"))
    assert host.spawned == ["RoomLink.join"]


def test_webrtc_needs_nothing_optional() -> None:
    require("webrtc")  # aiortc is a dependency, not an extra


def test_the_session_never_compares_a_transport_name() -> None:
    # the link is picked from MEDIA_LINKS; no `== "livekit"` style branch in the session itself
    compared = [
        node.lineno
        for node in ast.walk(ast.parse(SESSION.read_text("utf-8")))
        if isinstance(node, ast.Compare)
        and any(
            isinstance(side, ast.Constant) and side.value in MEDIA_TRANSPORTS
            for side in (node.left, *node.comparators)
        )
    ]
    assert compared == []

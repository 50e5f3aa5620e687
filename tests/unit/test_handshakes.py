"""The media handshakes on their own, through the `HandshakeHost` a session core gives them.

What they do inside a session is in ``conformance/traces`` (handshake-*, ice-*, genb-*); here is
their contract with the core: what they ask of the host and when, and that the core never branches
on a media transport's name (js/tests/handshakes.test.ts checks the TypeScript twins alike).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from decart_widget.protocol import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    Emit,
    InvalidInput,
    JoinRoom,
    Resolve,
    Send,
    SessionCore,
    StartPeer,
)
from decart_widget.protocol._constants import MEDIA_TRANSPORTS
from decart_widget.protocol._handshake import HandshakeHost, MediaHandshake, handshake_for
from decart_widget.protocol.messages import (
    Answer,
    IceCandidate,
    LivekitJoin,
    LivekitRoomInfo,
    Offer,
    Prompt,
    QueuePosition,
    SessionId,
)

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "decart_widget" / "protocol"
INITIAL = Send(Prompt("Anime", True))
ROOM = LivekitRoomInfo("ws://127.0.0.1:8000", "token-s1", "room-s1", "s1")


class FakeHost:
    """Records what a handshake asks of its core."""

    def __init__(self, *, empty: bool = False) -> None:
        self.empty = empty  # the desired state is empty: the initial state is skipped
        self.calls: list[tuple[str, object]] = []

    def host(self) -> HandshakeHost:
        return HandshakeHost(
            send_initial_state=self.send_initial_state,
            skip_initial_state=self.skip_initial_state,
            await_media=lambda now: self.calls.append(("await_media", now)),
            new_session_id=self.new_session_id,
            postpone=lambda seconds: self.calls.append(("postpone", seconds)),
        )

    def send_initial_state(self, now: float) -> Send:
        self.calls.append(("send_initial_state", now))
        return INITIAL

    def skip_initial_state(self, now: float) -> list[Action] | None:
        self.calls.append(("skip_initial_state", now))
        return [Resolve(7)] if self.empty else None

    def new_session_id(self, session_id: str) -> list[Action]:
        self.calls.append(("new_session_id", session_id))
        return [Emit("session_id", session_id)]


def make(transport: str, host: FakeHost) -> MediaHandshake:
    return handshake_for(transport, host.host(), room_info_timeout=15)


@pytest.mark.parametrize("transport", MEDIA_TRANSPORTS)
def test_every_media_transport_has_its_handshake(transport: str) -> None:
    handshake = make(transport, FakeHost())
    assert handshake.name == transport
    assert not handshake.started and handshake.queue is None
    assert SessionCore(transport=transport).transport == transport


def test_an_unknown_media_transport_is_invalid_input_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="'webrtc' or 'livekit', got 'carrier-pigeon'"):
        make("carrier-pigeon", FakeHost())


def test_gen_a_starts_its_peer_once_the_initial_state_is_answered() -> None:
    fake = FakeHost()
    handshake = make("webrtc", fake)
    assert handshake.begin(1.0) == [INITIAL]
    assert handshake.local_offer("offer") == []  # no peer yet: nothing of it goes out
    assert handshake.acked(2.0) == [StartPeer()]
    assert fake.calls == [("send_initial_state", 1.0), ("await_media", 2.0)]
    assert handshake.started
    assert handshake.local_offer("offer") == [Send(Offer("offer"))]
    assert handshake.local_candidate(None) == [Send(IceCandidate(None))]
    assert handshake.message(3.0, SessionId("s1")) == [Emit("session_id", "s1")]
    assert fake.calls[-1] == ("new_session_id", "s1")
    assert handshake.message(3.0, QueuePosition(1, 2)) is None  # not Gen-A's: the core's to ignore
    assert handshake.next_deadline() is None and handshake.expired(1e9) is None


def test_gen_a_forgets_held_candidates_when_closed() -> None:
    handshake = make("webrtc", FakeHost())
    handshake.acked(0.0)
    assert handshake.message(0.1, IceCandidate({"candidate": "candidate:stale"})) == []
    assert handshake.close(0.2) == [ClosePeer()]
    assert handshake.close(0.3) == []  # closed once
    handshake.acked(1.0)
    assert handshake.message(1.1, Answer("v=0")) == [ApplyAnswer("v=0")]
    assert handshake.message(1.2, IceCandidate({"candidate": "c"})) == [
        AddRemoteCandidate({"candidate": "c"})
    ]


@pytest.mark.parametrize(
    ("transport", "lost"),
    [("webrtc", {"failed", "closed"}), ("livekit", {"failed", "closed", "disconnected"})],
)
def test_which_media_states_mean_the_link_is_gone(transport: str, lost: set[str]) -> None:
    handshake = make(transport, FakeHost())
    media = "room" if transport == "livekit" else "peer connection"
    states = ["new", "connecting", "connected", "disconnected", "failed", "closed"]
    reasons = {state: handshake.lost(state) for state in states}
    assert reasons == {state: f"{media} {state}" if state in lost else None for state in states}


def test_gen_b_joins_then_sends_its_initial_state_as_its_own_frame() -> None:
    fake = FakeHost()
    handshake = make("livekit", fake)
    assert handshake.begin(1.0) == [Send(LivekitJoin()), INITIAL]
    assert fake.calls == [("skip_initial_state", 1.0), ("send_initial_state", 1.0)]
    assert handshake.next_deadline() == 16.0
    assert handshake.acked(2.0) == []  # the room waits for its info, not for the ack
    assert not handshake.started
    assert handshake.local_offer("offer") == [] and handshake.local_candidate(None) == []


def test_gen_b_with_nothing_to_send_joins_as_passthrough() -> None:
    fake = FakeHost(empty=True)
    handshake = make("livekit", fake)
    assert handshake.begin(0.0) == [Send(LivekitJoin(passthrough=True)), Resolve(7)]
    assert [name for name, _ in fake.calls] == ["skip_initial_state"]


def test_gen_b_hands_the_time_in_the_queue_to_the_host_and_its_own_deadline() -> None:
    fake = FakeHost()
    handshake = make("livekit", fake)
    handshake.begin(0.0)
    assert handshake.message(2.0, QueuePosition(3, 5)) == [
        Emit("queue", {"position": 3, "size": 5})
    ]
    assert handshake.message(4.0, QueuePosition(1, 5)) == [
        Emit("queue", {"position": 1, "size": 5})
    ]
    assert handshake.queue == (1, 5)
    assert handshake.message(12.0, ROOM) == [
        Emit("queue", None),
        JoinRoom("ws://127.0.0.1:8000", "token-s1", "room-s1", "s1"),
        Emit("session_id", "s1"),
    ]
    # queued from 2 s to 12 s: the core's deadlines move by 10 s; the room's 20 s start now
    assert fake.calls[-3:] == [("postpone", 10.0), ("await_media", 12.0), ("new_session_id", "s1")]
    assert handshake.started and handshake.queue is None
    assert handshake.next_deadline() is None  # the room info came
    assert handshake.message(13.0, ROOM) == []  # a second one changes nothing


def test_gen_b_closed_while_queued_leaves_the_queue_and_its_deadline() -> None:
    fake = FakeHost()
    handshake = make("livekit", fake)
    handshake.begin(0.0)
    handshake.message(5.0, QueuePosition(1, None))
    assert handshake.close(25.0) == [Emit("queue", None)]  # no room was joined: no ClosePeer
    assert fake.calls[-1] == ("postpone", 20.0)
    assert handshake.queue is None and handshake.next_deadline() is None
    handshake.begin(30.0)
    assert handshake.expired(44.9) is None
    assert handshake.expired(45.0) == "no room info within 15 s"


def test_no_module_compares_a_media_transport_name() -> None:
    """Not the cores, the widget, the client or the emulator: a transport is an object (a
    handshake, a media link) or a row of a table keyed by its name."""
    comparison = re.compile(
        r"""(?:[!=]=\s*["'](?:webrtc|livekit)["'])|(?:["'](?:webrtc|livekit)["']\s*[!=]=)"""
    )
    offending = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(PROTOCOL.parent.rglob("*.py"))
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if comparison.search(line)
    ]
    assert offending == []
    assert comparison.search('if self._transport == "livekit":')
    assert comparison.search("'webrtc' != transport")


def test_the_typescript_twins_have_the_same_names() -> None:
    source = (ROOT / "js" / "src" / "handshake.ts").read_text("utf-8")

    def members(interface: str) -> list[str]:
        match = re.search(rf"export interface {interface} \{{(.*?)\n\}}", source, re.S)
        assert match, interface
        names = re.findall(r"^  (?:readonly )?(\w+)[(:]", match.group(1), re.M)
        return [re.sub(r"[A-Z]", lambda c: "_" + c.group().lower(), name) for name in names]

    assert members("HandshakeHost") == [f.name for f in dataclasses.fields(HandshakeHost)]
    protocol = [name for name in vars(MediaHandshake) if not name.startswith("_")]
    assert members("MediaHandshake") == protocol

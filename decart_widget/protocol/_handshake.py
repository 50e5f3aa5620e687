"""How a session reaches its media: one handshake object per media transport.

The session core (`SessionCore`) runs the control half of the protocol -- requests, acks, ticks,
errors, retries, replay -- the same way for every media transport. What differs is the handshake
(docs/protocol.md): what goes out once the socket opens, when the media link starts, which server
messages belong to it. A `MediaHandshake` holds those rules and their state; the core builds one
from the transport's name (`handshake_for`) and delegates to it, never asking which one it holds:

* `GenAHandshake` (``"webrtc"``, ``_handshake_gen_a.py``): the initial state, then, once it is
  answered, the peer connection, whose SDP offer/answer and ICE candidates use the same socket;
* `GenBHandshake` (``"livekit"``, ``_handshake_gen_b.py``): ``livekit_join`` and the initial
  state as its own frame; the room is joined on ``livekit_room_info``, whenever that comes.

A handshake acts on its core only through the `HandshakeHost` it is given. The TypeScript twin is
js/src/handshake.ts, with the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ._actions import Action, Send
from ._constants import MEDIA_TRANSPORTS
from ._errors import InvalidInput
from ._handshake_gen_a import GenAHandshake
from ._handshake_gen_b import GenBHandshake
from .messages import JSON, ServerMessage


@dataclass(frozen=True)
class HandshakeHost:
    """What a handshake may ask of its session core."""

    #: send the whole desired state as the first frame; its ack ends the handshake
    #: (`MediaHandshake.acked`)
    send_initial_state: Callable[[float], Send]
    #: when the desired state is empty, end the handshake with no frame: the settlements of the
    #: requests that rode on it, or None when there is a state to send
    skip_initial_state: Callable[[float], list[Action] | None]
    #: the media link was started: its connect deadline runs from ``now``
    await_media: Callable[[float], None]
    #: the server named its session: the actions that publish it
    new_session_id: Callable[[str], list[Action]]
    #: the session waited this many seconds in the server's queue: its deadlines move by as much
    postpone: Callable[[float], None]


class MediaHandshake(Protocol):
    """One media transport's handshake (see the module docstring)."""

    @property
    def name(self) -> str:
        """The media transport's name (``constants.MEDIA_TRANSPORTS``)."""

    @property
    def started(self) -> bool:
        """The media link (peer connection, room) was started and is not closed."""

    @property
    def queue(self) -> tuple[int, int | None] | None:
        """``(position, size)`` while the session waits in the server's queue, else None; every
        deadline of the session pauses meanwhile."""

    def begin(self, now: float) -> list[Action]:
        """The socket opened: the first frames."""

    def acked(self, now: float) -> list[Action]:
        """The initial state was answered (accepted or not): requests may go out now."""

    def message(self, now: float, msg: ServerMessage) -> list[Action] | None:
        """Handle a message of the media handshake; None when the message is not one."""

    def local_offer(self, sdp: str) -> list[Action]:
        """The local peer connection's offer."""

    def local_candidate(self, candidate: JSON | None) -> list[Action]:
        """A local ICE candidate (None: the end of them)."""

    def lost(self, state: str) -> str | None:
        """Why the media link is gone if its ``state`` means so, else None."""

    def next_deadline(self) -> float | None:
        """The handshake's own deadline, if any."""

    def expired(self, now: float) -> str | None:
        """Why the session lost its connection if the handshake's deadline passed, else None."""

    def close(self, now: float) -> list[Action]:
        """The socket is gone: close the media link, forget the handshake."""


def handshake_for(
    transport: str, host: HandshakeHost, *, room_info_timeout: float
) -> MediaHandshake:
    """The handshake of the media transport named ``transport``."""
    handshakes: dict[str, Callable[[], MediaHandshake]] = {
        "webrtc": lambda: GenAHandshake(host),
        "livekit": lambda: GenBHandshake(host, room_info_timeout=room_info_timeout),
    }
    make = handshakes.get(transport) if transport in MEDIA_TRANSPORTS else None
    if make is None:
        known = " or ".join(repr(name) for name in MEDIA_TRANSPORTS)
        raise InvalidInput(f"media transport must be {known}, got {transport!r}")
    return make()

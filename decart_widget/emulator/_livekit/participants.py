"""What a room tells its clients about itself: Room, ParticipantInfo, TrackInfo, ServerInfo.

Identifiers follow LiveKit's shapes (``RM_``, ``PA_``, ``TR_`` and 12 random characters): the
clients check the prefixes, and the subscriber track's media stream id is
``"<participant sid>|<track sid>"``, which is how they match a received track to a publication.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field

from livekit.protocol import models as lk

#: What the emulator says it is (LiveKit's server reports its version and protocol here).
SERVER_VERSION = "1.9.0"
PROTOCOL_VERSION = 16
#: LiveKit's defaults: the client pings every 5 s and gives up after 15 s without a pong.
PING_INTERVAL_SECONDS = 5
PING_TIMEOUT_SECONDS = 15

_ALPHABET = string.ascii_letters + string.digits


def new_sid(prefix: str) -> str:
    """A LiveKit-shaped identifier: ``prefix`` + ``_`` + 12 random letters and digits."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def server_info(node_id: str) -> lk.ServerInfo:
    return lk.ServerInfo(
        edition=lk.ServerInfo.Standard,
        version=SERVER_VERSION,
        protocol=PROTOCOL_VERSION,
        region="local",
        node_id=node_id,
    )


@dataclass
class Participant:
    """One participant: the user or the inference server."""

    identity: str
    sid: str = field(default_factory=lambda: new_sid("PA"))
    joined_at: float = field(default_factory=time.time)
    state: lk.ParticipantInfo.State = lk.ParticipantInfo.JOINED
    tracks: dict[str, lk.TrackInfo] = field(default_factory=dict)
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    version: int = 0

    def info(self) -> lk.ParticipantInfo:
        """The participant as the clients see it (the version grows with every change)."""
        self.version += 1
        return lk.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.identity,
            state=self.state,
            tracks=list(self.tracks.values()),
            joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000),
            version=self.version,
            permission=lk.ParticipantPermission(
                can_publish=self.can_publish,
                can_subscribe=self.can_subscribe,
                can_publish_data=self.can_publish_data,
            ),
            is_publisher=bool(self.tracks),
            kind=lk.ParticipantInfo.STANDARD,
        )


def video_track(
    sid: str, name: str, width: int, height: int, mime_type: str, mid: str = ""
) -> lk.TrackInfo:
    """A published camera track of one layer."""
    layer = lk.VideoLayer(quality=lk.VideoQuality.HIGH, width=width, height=height)
    return lk.TrackInfo(
        sid=sid,
        type=lk.TrackType.VIDEO,
        name=name,
        width=width,
        height=height,
        source=lk.TrackSource.CAMERA,
        mime_type=mime_type,
        mid=mid,
        layers=[layer],
        codecs=[lk.SimulcastCodecInfo(mime_type=mime_type, mid=mid, layers=[layer])],
    )


def room_info(sid: str, name: str, created_at: float, participants: int) -> lk.Room:
    return lk.Room(
        sid=sid,
        name=name,
        empty_timeout=300,
        departure_timeout=20,
        max_participants=2,
        creation_time=int(created_at),
        creation_time_ms=int(created_at * 1000),
        num_participants=participants,
        num_publishers=participants,
    )

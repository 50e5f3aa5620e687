"""The headless client's media links by transport name: the one place where a name picks one.

`RealtimeSession` builds its link from `MEDIA_LINKS` and then only calls the `MediaLink` protocol
(``handle`` each media action, ``close``), whichever transport it holds; `require` checks, before
anything is opened, that a transport's optional dependency is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from aiortc.mediastreams import MediaStreamTrack

from .._ice import IceServersSource
from ..models import RealtimeModel
from ._livekit import RoomLink, require_livekit
from ._media import MediaHost, MediaLink
from ._webrtc import PeerLink

IceServers: TypeAlias = Iterable[dict[str, Any]] | IceServersSource
LinkFactory: TypeAlias = Callable[
    [MediaHost, MediaStreamTrack, RealtimeModel, float, IceServers], MediaLink
]


def _room(
    host: MediaHost, track: MediaStreamTrack, model: RealtimeModel, fps: float, ice: IceServers
) -> MediaLink:
    return RoomLink(host, track, model, fps, ice)


def _peer(
    host: MediaHost, track: MediaStreamTrack, model: RealtimeModel, fps: float, ice: IceServers
) -> MediaLink:
    # the service reads the peer's size and rate from the video itself
    return PeerLink(host, track, ice)


#: Gen-B (``"livekit"``, a LiveKit room) and Gen-A (``"webrtc"``, one peer connection).
MEDIA_LINKS: dict[str, LinkFactory] = {"livekit": _room, "webrtc": _peer}

_REQUIREMENTS: dict[str, Callable[[], object]] = {"livekit": require_livekit}


def require(transport: str) -> None:
    """Raise `MissingDependency` (naming the extra) if ``transport`` needs what is not installed."""
    check = _REQUIREMENTS.get(transport)
    if check is not None:
        check()

"""One emulator's settings and the services its HTTP handlers and sessions share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._connection_guard import default_max_connections, descriptor_limit
from ..protocol._constants import MAX_IMAGE_BYTES
from ._credits import CreditLedger
from ._faults import Faults
from ._gen_b import RoomHost
from ._livekit import RoomServer
from ._moderation import DEFAULT_BLOCKLIST, Moderator
from ._queue import RoomQueue
from ._records import Recorder
from ._tokens import TokenStore

#: The permanent key a default emulator accepts: short and obviously not a real Decart key.
DEFAULT_API_KEY = "dct_local_emulator"


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = DEFAULT_API_KEY
    blocklist: tuple[str, ...] = DEFAULT_BLOCKLIST
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_concurrent_sessions: int = 4
    credits_seconds: float | None = None
    #: Wall-clock seconds per generation second: ticks, credits and maxSessionDuration all count
    #: in ticks, so a small value makes a fast test of a long session.
    tick_seconds: float = 1.0
    #: Gen-B sessions that may hold a room at once; the others wait in line, told their
    #: ``queue_position`` (see `decart_widget.emulator._queue`). None: nobody waits; 0: everyone.
    room_capacity: int | None = None
    #: ICE servers for the emulator's own WebRTC peers (RTCIceServer-like dicts, checked): a
    #: TURN server both the browser and the emulator reach carries media across networks.
    ice_servers: tuple[dict[str, Any], ...] = ()
    #: Seconds a session's media may take to connect once the client has the media's address
    #: (the answer, the room's URL); then the session ends with "peer connection failed" and the
    #: reason (`decart_widget.emulator._stream`). None: no bound. Under the front end's own
    #: 20 s (docs/where-it-works.md), so the emulator's reason arrives first.
    media_connect_seconds: float | None = 15.0
    #: A connection with no request in progress (a half-sent upgrade, an idle keep-alive one)
    #: is closed after this many seconds (`decart_widget._connection_guard`).
    handshake_timeout: float = 10.0
    #: Open connections at most; None: derived from the descriptor limit; 0: no cap.
    max_connections: int | None = None
    #: Connections from one client address at most (None or 0: no cap, the default: every local
    #: client, a proxy's upstream connections included, comes from 127.0.0.1).
    max_connections_per_address: int | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must be a non-empty string")
        if self.max_image_bytes <= 0:
            raise ValueError("max_image_bytes must be positive")
        if self.max_concurrent_sessions < 1:
            raise ValueError("max_concurrent_sessions must be at least 1")
        if self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        if self.room_capacity is not None and self.room_capacity < 0:
            raise ValueError("room_capacity must be None or at least 0")
        if not self.handshake_timeout > 0:
            raise ValueError("handshake_timeout must be positive")
        for name in ("max_connections", "max_connections_per_address"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative (0: no cap)")
        if self.media_connect_seconds is not None and self.media_connect_seconds <= 0:
            raise ValueError("media_connect_seconds must be None or positive")

    def connection_cap(self) -> int | None:
        """The total connection cap in force (None: none)."""
        if self.max_connections is None:
            return default_max_connections(descriptor_limit())
        return self.max_connections or None

    @property
    def max_message_bytes(self) -> int:
        """WebSocket frame limit: room for twice the largest image in base64, so an oversized
        image still gets a clear ``set_image_ack`` instead of a 1009 close."""
        return (self.max_image_bytes * 4 // 3) * 2 + 1024 * 1024


@dataclass
class Services:
    config: EmulatorConfig
    tokens: TokenStore
    credits: CreditLedger = field(default_factory=CreditLedger)
    faults: Faults = field(default_factory=Faults)
    recorder: Recorder = field(default_factory=Recorder)
    moderator: Moderator = field(default_factory=Moderator)
    queue: RoomQueue = field(default_factory=RoomQueue)
    #: The LiveKit-compatible room server for Gen-B sessions (None: Gen-B joins get an error);
    #: `create` gives every emulator a `RoomServer` (`decart_widget.emulator._livekit`).
    rooms: RoomHost | None = None
    #: The port actually bound (``config.port`` may be 0).
    port: int = 0

    @classmethod
    def create(cls, config: EmulatorConfig) -> Services:
        services = cls(
            config=config,
            tokens=TokenStore([config.api_key]),
            moderator=Moderator(config.blocklist),
            queue=RoomQueue(config.room_capacity),
            rooms=RoomServer(),
        )
        services.credits.set(config.api_key, config.credits_seconds)
        return services

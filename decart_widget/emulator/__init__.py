"""The local, Decart-compatible realtime service (docs/emulator.md, docs/protocol.md).

One module per job:

* `server` -- `Emulator` (public API, background-thread lifecycle) and `serve_forever` (CLI);
* `app` -- the aiohttp routes: token minting, quota, ``/v1/stream`` admission and close codes;
* `stream` -- one ``/v1/stream`` session: messages, acks, generation ticks, how sessions end;
* `media` -- the aiortc peer: receive video, run the effect, send it back;
* `livekit` -- Gen-B: a LiveKit-compatible room (signalling, tokens, media) per session;
* `effects` -- the "model": numpy effects chosen by prompt keywords;
* `tokens`, `credits`, `moderation`, `images`, `faults`, `records` -- what their names say;
* `config` -- settings and the services shared by the above.
"""

from __future__ import annotations

from ._config import DEFAULT_API_KEY, EmulatorConfig
from ._faults import Faults
from ._records import EmulatedSession, Rejection
from ._server import Emulator, serve_forever

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatedSession",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "Rejection",
    "serve_forever",
]

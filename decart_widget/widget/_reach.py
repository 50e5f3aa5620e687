"""What a page on another host than the kernel is told when it cannot reach the service.

A service beside the kernel (the local emulator, or any backend at the kernel's loopback) is out
of reach of a browser on another host unless the network lets it through (docs/where-it-works.md).
The front end sees when its page comes from another host than the kernel's loopback; the kernel
knows what the service is and which signaling mode the widget uses, so it writes the ways out,
and the page adds them to the failures only that setup explains (js/src/reach.ts): a loopback URL
it cannot dial, a socket to the emulator's port that cannot be made, media that cannot connect.
The text lives here, not in the front end's bundle.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .._backends import Backend, is_emulator
from ._modes import SignalingMode

_LOOPBACK = ("localhost", "127.0.0.1", "::1")

#: The ways out for every mode; a mode other than kernel may also send its signaling through
#: the kernel (`THROUGH_THE_KERNEL`).
WAYS_OUT = (
    "set DECART_API_KEY to use the real service, run Jupyter on this computer, or give"
    " ice_servers with a TURN server both reach"
)
#: The ways out for a widget given ICE servers: they did not carry the media either.
WAYS_OUT_WITH_ICE = (
    "check that the TURN server in ice_servers is reachable from this browser and from the"
    " kernel's host, set DECART_API_KEY to use the real service, or run Jupyter on this computer"
)
THROUGH_THE_KERNEL = (
    ' Its signaling can go through the kernel instead: signaling="kernel" (its media still'
    " has to reach the kernel's host)."
)
#: What a media transport needs of an emulator beside the kernel beyond the ways out, by name: a
#: LiveKit room's signal socket is the browser's own, to the emulator's port, and a TURN server
#: carries the media only (docs/where-it-works.md).
TRANSPORT_NEEDS = {
    "livekit": (
        " A LiveKit room also needs the emulator's own port on the kernel's host: where only"
        " Jupyter's port gets through (a hub's proxy, an SSH tunnel), use transport=\"webrtc\""
        " with ice_servers."
    ),
}


def beside_the_kernel(backend: Backend | None) -> bool:
    """Whether the service runs next to the kernel: an emulator, or a loopback URL."""
    if backend is None:
        return False
    if is_emulator(backend):
        return True
    host = urlsplit(backend.realtime_url).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def remote_page_help(
    backend: Backend | None, mode: SignalingMode, transport: str, ice_servers_given: bool
) -> str:
    """The ``remote_page_help`` traitlet: the cause and the ways out ("" for a service that is
    not beside the kernel), for a widget of ``transport`` given ICE servers or not."""
    if not beside_the_kernel(backend):
        return ""
    emulator = backend is not None and is_emulator(backend)
    what = "the local emulator" if emulator else "the service"
    ways_out = WAYS_OUT_WITH_ICE if ice_servers_given else WAYS_OUT
    text = (
        f"The browser cannot reach {what} running next to the kernel if this page comes from"
        f" another host (a remote server, a hub, an SSH tunnel): {ways_out}."
    )
    if not mode.signals_through_the_kernel:
        text += THROUGH_THE_KERNEL
    if emulator:
        text += TRANSPORT_NEEDS.get(transport, "")
    return text

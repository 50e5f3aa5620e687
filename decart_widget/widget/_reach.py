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
THROUGH_THE_KERNEL = (
    ' Its signaling can go through the kernel instead: signaling="kernel" (its media still'
    " has to reach the kernel's host)."
)


def beside_the_kernel(backend: Backend | None) -> bool:
    """Whether the service runs next to the kernel: an emulator, or a loopback URL."""
    if backend is None:
        return False
    if is_emulator(backend):
        return True
    host = urlsplit(backend.realtime_url).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def remote_page_help(backend: Backend | None, mode: SignalingMode) -> str:
    """The ``remote_page_help`` traitlet: the cause and the ways out ("" for a service that is
    not beside the kernel)."""
    if not beside_the_kernel(backend):
        return ""
    what = "the local emulator" if backend is not None and is_emulator(backend) else "the service"
    text = (
        f"The browser cannot reach {what} running next to the kernel, on another host than this"
        f" page: {WAYS_OUT}."
    )
    return text if mode.name == "kernel" else text + THROUGH_THE_KERNEL

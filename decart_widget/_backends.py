"""Where the realtime service lives and how to authenticate to it.

A backend is anything with ``api_url`` (HTTP), ``realtime_url`` (WebSocket base) and ``api_key``
(the permanent key). `Decart` is the real service; `decart_widget.Emulator` is the local one.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .protocol._errors import AuthenticationError
from .protocol._urls import redact, redact_key

if TYPE_CHECKING:
    from .emulator import Emulator

log = logging.getLogger("decart_widget.backends")

DEFAULT_API_URL = "https://api.decart.ai"
DEFAULT_REALTIME_URL = "wss://api3.decart.ai"


@runtime_checkable
class Backend(Protocol):
    @property
    def api_url(self) -> str: ...

    @property
    def realtime_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


class Decart:
    """Decart's hosted service. The key comes from ``api_key`` or ``DECART_API_KEY``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        api_url: str | None = None,
        realtime_url: str | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("DECART_API_KEY", "")
        if not isinstance(key, str) or not key.strip():
            raise AuthenticationError(
                "no Decart API key: pass Decart(api_key=...) or set DECART_API_KEY "
                "(or use decart_widget.Emulator() to work offline)"
            )
        self._api_key = key.strip()
        self._api_url = (api_url or os.environ.get("DECART_API_URL") or DEFAULT_API_URL).rstrip("/")
        self._realtime_url = (
            realtime_url or os.environ.get("DECART_REALTIME_URL") or DEFAULT_REALTIME_URL
        ).rstrip("/")

    @property
    def api_url(self) -> str:
        return self._api_url

    @property
    def realtime_url(self) -> str:
        return self._realtime_url

    @property
    def api_key(self) -> str:
        return self._api_key

    def __repr__(self) -> str:
        return (
            f"Decart(api_url={redact(self._api_url)!r}, "
            f"realtime_url={redact(self._realtime_url)!r}, "
            f"api_key={redact_key(self._api_key)!r})"
        )


_shared_emulator: Emulator | None = None
_shared_lock = threading.Lock()

#: Where the widget's automatic emulator listens: every IPv4 interface, so a browser on another
#: host that reaches the kernel's host reaches it too (a LiveKit room's signal socket, direct
#: signaling); the page puts in its own host for the wildcard (docs/where-it-works.md).
SHARED_EMULATOR_HOST = "0.0.0.0"


def shared_emulator() -> Emulator:
    """One local emulator per process, started on first use and stopped at exit.

    It listens on every interface (`SHARED_EMULATOR_HOST`) with a random key of its own, not the
    emulator's well-known test key: only the kernel holds it, and a browser gets short-lived
    client tokens or room tokens, so nobody else on the network can start a session on it.
    """
    global _shared_emulator
    with _shared_lock:
        if _shared_emulator is None:
            from .emulator import Emulator

            key = f"dct_local_{secrets.token_urlsafe(18)}"
            _shared_emulator = Emulator(host=SHARED_EMULATOR_HOST, api_key=key).start()
            atexit.register(_shared_emulator.stop)
            log.info("started the local emulator at %s", _shared_emulator.api_url)
        return _shared_emulator


def default_backend() -> Backend:
    """Decart when ``DECART_API_KEY`` is set, else the shared local emulator."""
    if os.environ.get("DECART_API_KEY", "").strip():
        return Decart()
    return shared_emulator()


def is_shared_emulator(backend: Backend | None) -> bool:
    """Whether ``backend`` is the widget's automatic emulator (`shared_emulator`)."""
    return backend is not None and backend is _shared_emulator


def browser_url(backend: Backend) -> str:
    """The realtime URL to hand the browser: an emulator bound to every interface gives its
    wildcard form, which the page fills with its own host (`Emulator.browser_realtime_url`)."""
    url = getattr(backend, "browser_realtime_url", None)
    return url if isinstance(url, str) else backend.realtime_url


def is_emulator(backend: Backend) -> bool:
    from .emulator import Emulator

    return isinstance(backend, Emulator)

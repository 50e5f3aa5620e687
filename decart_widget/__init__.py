"""decart-widget: realtime AI video (Decart's Lucy models) in Jupyter.

The heavy parts (aiortc, the emulator, the widget) load on first use, so ``import decart_widget``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import models
from ._backends import Backend, Decart
from ._recording import AlreadyRecording, NotRecording, RecordingError, RecordingTooLarge
from ._tokens import ClientToken, TokenMinter
from .models import RealtimeModel
from .protocol._errors import (
    AckTimeout,
    AuthenticationError,
    ConcurrencyLimit,
    ConnectionLost,
    DecartError,
    InsufficientCredits,
    InvalidInput,
    MissingDependency,
    ModerationError,
    ProtocolError,
    SessionEnded,
)

if TYPE_CHECKING:
    from .client import RealtimeSession
    from .emulator import Emulator
    from .widget import Direct, Kernel, Proxy, RealtimeWidget

__version__ = "0.1.0"

_LAZY = {
    "Direct": "decart_widget.widget",
    "Emulator": "decart_widget.emulator",
    "Kernel": "decart_widget.widget",
    "Proxy": "decart_widget.widget",
    "RealtimeSession": "decart_widget.client",
    "RealtimeWidget": "decart_widget.widget",
    "proxy": "decart_widget.proxy",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'decart_widget' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "proxy" else getattr(module, name)
    globals()[name] = value
    return value


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter server's entry point: see ``decart_widget.server_extension``."""
    return [{"module": "decart_widget.server_extension"}]


__all__ = [
    "AckTimeout",
    "AlreadyRecording",
    "AuthenticationError",
    "Backend",
    "ClientToken",
    "ConcurrencyLimit",
    "ConnectionLost",
    "Decart",
    "DecartError",
    "Direct",
    "Emulator",
    "InsufficientCredits",
    "InvalidInput",
    "Kernel",
    "MissingDependency",
    "ModerationError",
    "NotRecording",
    "ProtocolError",
    "Proxy",
    "RealtimeModel",
    "RealtimeSession",
    "RealtimeWidget",
    "RecordingError",
    "RecordingTooLarge",
    "SessionEnded",
    "TokenMinter",
    "__version__",
    "models",
]

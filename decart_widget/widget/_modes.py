"""Signaling modes as objects: how a widget's front end reaches the realtime service.

``RealtimeWidget(signaling=...)`` takes one of these, the way an httpx ``Client`` takes a
``transport=``: `Direct` (the default), `Kernel` or `Proxy`. The strings ``"direct"``,
``"kernel"`` and ``"proxy"`` are shorthands for a mode with its defaults, and the widget's older
keyword arguments (``token_seconds=``, ``proxy_url=``, ...) still fill in the mode they belong to
(`resolve`). Each mode holds the parameters that only mean something in it and gives the widget
its behaviour, so the widget never asks which mode it holds:

* what the front end is told: the ``signaling`` traitlet (`SignalingMode.name`, which the front
  end maps to its own mode object) and the ``realtime_url`` traitlet (`SignalingMode.frontend_url`);
* whether the widget needs a backend of its own (`SignalingMode.default_backend`);
* per widget (`SignalingMode.attach` -> `AttachedMode`): how token requests are answered (a
  client token, the proxy's user token, or a refusal), whether a kernel relay runs, the signal
  hooks and the usage ledger.

The **media transport** (how video travels: `MEDIA_TRANSPORTS`, ``"webrtc"`` for one peer
connection with SDP over the control socket, ``"livekit"`` for a LiveKit room) is the second,
independent axis. The widget takes it as ``transport=`` and syncs it as its own traitlet; a mode
may carry one too (``dw.Kernel(transport="livekit")``, None: the widget's choice). No mode
behaves differently by transport: the kernel relay forwards the frames of either generation
unchanged, and the front end keeps the two axes apart too (docs/architecture.md).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from .._backends import Backend, browser_url, default_backend, is_shared_emulator
from .._tokens import TokenMinter
from ..protocol._errors import DecartError, InvalidInput
from ._emulator_ice import bind_to_token
from ._hooks import SignalHook, UsageRecord

if TYPE_CHECKING:
    from ._kernel_relay import KernelRelay, RelayHost
    from ._updates import WidgetState

log = logging.getLogger("decart_widget.widget")

SignalingName = Literal["direct", "kernel", "proxy"]
#: The ``signaling`` traitlet's values, which the front end understands.
SIGNALING: tuple[SignalingName, ...] = ("direct", "kernel", "proxy")
#: Media transports: a LiveKit room (Gen-B) or one WebRTC peer with SDP on the control socket
#: (Gen-A); docs/signaling.md, "Media transports".
MEDIA_TRANSPORTS = ("livekit", "webrtc")
#: What Decart's own SDKs use, for the service and the emulator alike.
DEFAULT_TRANSPORT = "livekit"


class WidgetPort(Protocol):
    """What a mode needs from its widget (`RealtimeWidget` gives a weak adapter; called on the
    kernel relay's thread in kernel mode)."""

    @property
    def model(self) -> str: ...
    @property
    def resolution(self) -> str | None: ...
    @property
    def ice_servers(self) -> list[dict[str, Any]] | None:
        """The ICE servers the page has now; None when the widget was given none."""

    def desired(self) -> WidgetState: ...
    def send_to_browser(self, content: dict[str, Any]) -> None: ...
    def revert(self, settings: WidgetState) -> None: ...
    def show_error(self, kind: str, message: str) -> None: ...


class AttachedMode(ABC):
    """One widget's side of its signaling mode. This base is a mode without a kernel relay."""

    #: the mode it came from (for its name in messages)
    mode: SignalingMode

    @abstractmethod
    def answer_token_request(self) -> dict[str, Any]:
        """The reply to the front end's ``token_request`` (``type`` ``token`` or
        ``token_error``), without its ``id``."""

    def signal_message(self, kind: str, content: dict[str, Any], buffers: Any) -> None:
        """A kernel-signaling custom message (``signal_open``, ``signal``, ``signal_close``)."""
        log.debug("ignoring %s: signaling=%r relays nothing in the kernel", kind, self.mode.name)

    def state_changed(self) -> None:
        """The widget's prompt, image or enhance changed (the front end sends it on)."""
        return None

    def add_hook(self, callback: SignalHook) -> None:
        raise self._no_relay("on_signal")

    def remove_hook(self, callback: SignalHook) -> None:
        raise self._no_relay("on_signal")

    def _no_relay(self, what: str) -> InvalidInput:
        return InvalidInput(
            f'{what} needs signaling="kernel" (dw.Kernel()); this widget uses '
            f"signaling={self.mode.name!r}"
        )

    @property
    def usage(self) -> list[UsageRecord]:
        return []

    def close(self) -> None:
        """The widget is closing (nothing of this mode runs in the kernel)."""
        return None


class SignalingMode(ABC):
    """How the front end reaches the service; see the module docstring. Immutable, and one mode
    object may serve several widgets (`attach` makes each widget's own state)."""

    #: the ``signaling`` traitlet's value for this mode
    name: ClassVar[SignalingName]
    #: the protocol frames ride the widget's comm: the page never dials the service's signaling
    signals_through_the_kernel: ClassVar[bool] = False
    #: the widget's old keyword arguments that belong to this mode -> this mode's field names
    legacy_keywords: ClassVar[dict[str, str]] = {}
    #: the media transport, or None: the widget's ``transport=`` (docs/signaling.md)
    transport: str | None

    def _check_transport(self) -> None:
        if self.transport is not None and self.transport not in MEDIA_TRANSPORTS:
            raise InvalidInput(
                f"transport must be one of {', '.join(map(repr, MEDIA_TRANSPORTS))} or None; "
                f"got {self.transport!r}"
            )

    def default_backend(self) -> Backend | None:
        """The backend a widget uses when given none."""
        return default_backend()

    @abstractmethod
    def frontend_url(self, backend: Backend | None) -> str:
        """The ``realtime_url`` traitlet: the WebSocket base the front end opens ("" for none)."""

    @abstractmethod
    def attach(self, backend: Backend | None, widget: WidgetPort) -> AttachedMode:
        """This mode's state for one widget."""


# ---- direct ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Direct(SignalingMode):
    """The browser opens the service's WebSocket with a client token the kernel mints for every
    (re)connect: short-lived (``token_seconds``), scoped to the widget's model, optionally to
    page origins (``allowed_origins``) and to a session length (``max_session_seconds``, enforced
    by the service)."""

    max_session_seconds: int | None = None
    token_seconds: int = 60
    allowed_origins: Sequence[str] | None = None
    transport: str | None = None

    name: ClassVar[SignalingName] = "direct"
    legacy_keywords: ClassVar[dict[str, str]] = {
        "max_session_seconds": "max_session_seconds",
        "token_seconds": "token_seconds",
        "allowed_origins": "allowed_origins",
    }

    def __post_init__(self) -> None:
        seconds = self.max_session_seconds
        if seconds is not None and (not _is_int(seconds) or seconds <= 0):
            raise InvalidInput("max_session_seconds must be a positive whole number of seconds")
        if not _is_int(self.token_seconds) or not 1 <= self.token_seconds <= 3600:
            raise InvalidInput("token_seconds must be a whole number from 1 to 3600")
        origins = self.allowed_origins
        if isinstance(origins, str):
            raise InvalidInput("allowed_origins must be a list of origins, not one string")
        object.__setattr__(self, "allowed_origins", tuple(origins) if origins else None)
        self._check_transport()

    def frontend_url(self, backend: Backend | None) -> str:
        return browser_url(backend) if backend is not None else ""

    def attach(self, backend: Backend | None, widget: WidgetPort) -> AttachedMode:
        if backend is None:
            raise InvalidInput("signaling=dw.Direct() needs a backend to mint client tokens")
        return _AttachedDirect(self, backend, widget)


class _AttachedDirect(AttachedMode):
    def __init__(self, mode: Direct, backend: Backend, widget: WidgetPort) -> None:
        self.mode = self._direct = mode
        self._backend = backend
        self._minter = TokenMinter(backend)
        self._widget = widget

    def answer_token_request(self) -> dict[str, Any]:
        mode = self._direct
        try:
            token = self._minter.mint(
                expires_in=mode.token_seconds,
                allowed_models=[self._widget.model],
                allowed_origins=list(mode.allowed_origins) if mode.allowed_origins else None,
                max_session_duration=mode.max_session_seconds,
                reuse=False,
            )
            bind_to_token(self._backend, token.api_key, self._widget.ice_servers)
        except DecartError as exc:
            log.warning("could not mint a client token: %s", exc)
            return {"type": "token_error", "kind": exc.kind, "message": str(exc)}
        return {
            "type": "token",
            "api_key": token.api_key,
            "realtime_url": browser_url(self._backend),
            "expires_at": token.expires_at.isoformat(),
        }


# ---- kernel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel(SignalingMode):
    """The browser holds no credential: its protocol frames ride the widget comm and the kernel
    relays them to the service with the permanent key (`decart_widget.widget._kernel_relay`).
    ``hooks`` are `on_signal` callbacks every widget of this mode starts with."""

    hooks: Sequence[SignalHook] = ()
    transport: str | None = None

    name: ClassVar[SignalingName] = "kernel"
    signals_through_the_kernel: ClassVar[bool] = True

    def __post_init__(self) -> None:
        hooks = tuple(self.hooks)
        for hook in hooks:
            if not callable(hook):
                raise InvalidInput(f"hooks must be callables (frame, direction); got {hook!r}")
        object.__setattr__(self, "hooks", hooks)
        self._check_transport()

    def frontend_url(self, backend: Backend | None) -> str:
        return ""  # the browser learns nothing about the service, not even where it is

    def attach(self, backend: Backend | None, widget: WidgetPort) -> AttachedMode:
        if backend is None:
            raise InvalidInput("signaling=dw.Kernel() needs a backend to relay to")
        return _AttachedKernel(self, backend, widget)


class _AttachedKernel(AttachedMode):
    def __init__(self, mode: Kernel, backend: Backend, widget: WidgetPort) -> None:
        from ._kernel_relay import KernelRelay

        self.mode = mode
        self._widget = widget
        host: RelayHost = widget
        self._relay: KernelRelay = KernelRelay(backend, host, widget.desired())
        self._relay.hooks.extend(mode.hooks)

    def answer_token_request(self) -> dict[str, Any]:
        return {
            "type": "token_error",
            "kind": "invalid_input",
            "message": "kernel signaling relays the connection: no tokens are issued",
        }

    def signal_message(self, kind: str, content: dict[str, Any], buffers: Any) -> None:
        relay = self._relay
        conn_id = content.get("id")
        if not isinstance(conn_id, int):
            log.debug("ignoring %s without a connection id", kind)
            return
        if kind == "signal_open":
            model = content.get("model")
            relay.open(
                conn_id,
                model if isinstance(model, str) and model else self._widget.model,
                self._widget.resolution,
            )
        elif kind == "signal":
            frame = content.get("frame")
            if isinstance(frame, dict):
                relay.frame(conn_id, frame, [bytes(b) for b in buffers or []])
        elif kind == "signal_close":
            code = content.get("code")
            reason = content.get("reason")
            relay.close_connection(
                conn_id,
                code if isinstance(code, int) else None,
                reason if isinstance(reason, str) else "",
            )

    def state_changed(self) -> None:
        self._relay.set_desired(self._widget.desired())

    def add_hook(self, callback: SignalHook) -> None:
        self._relay.hooks.append(callback)

    def remove_hook(self, callback: SignalHook) -> None:
        if callback in self._relay.hooks:
            self._relay.hooks.remove(callback)

    @property
    def usage(self) -> list[UsageRecord]:
        return self._relay.usage

    def close(self) -> None:
        self._relay.shutdown()


# ---- proxy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy(SignalingMode):
    """The browser opens your signaling proxy (``decart-widget proxy``, docs/proxy.md) at ``url``
    with ``token``, a user token your platform issued; the kernel holds no key for it."""

    url: str = ""
    token: str = field(default="", repr=False)  # a credential: never in a repr
    transport: str | None = None

    name: ClassVar[SignalingName] = "proxy"
    legacy_keywords: ClassVar[dict[str, str]] = {"proxy_url": "url", "proxy_token": "token"}

    def __post_init__(self) -> None:
        if not (isinstance(self.url, str) and self.url and isinstance(self.token, str)):
            raise InvalidInput(_PROXY_NEEDS)
        if not self.token.strip():
            raise InvalidInput(_PROXY_NEEDS)
        if not self.url.startswith(("ws://", "wss://")):
            raise InvalidInput(f"the proxy's URL must start with ws:// or wss://; got {self.url!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        self._check_transport()

    def default_backend(self) -> Backend | None:
        return None  # the proxy holds the service's key; the kernel needs none

    def frontend_url(self, backend: Backend | None) -> str:
        return self.url

    def attach(self, backend: Backend | None, widget: WidgetPort) -> AttachedMode:
        return _AttachedProxy(self)


_PROXY_NEEDS = (
    'signaling="proxy" needs the proxy\'s URL and a user token: dw.Proxy(url, token), or '
    "proxy_url= and proxy_token="
)


class _AttachedProxy(AttachedMode):
    def __init__(self, mode: Proxy) -> None:
        self.mode = self._proxy = mode

    def answer_token_request(self) -> dict[str, Any]:
        mode = self._proxy
        return {"type": "token", "api_key": mode.token, "realtime_url": mode.url}


# ---- from RealtimeWidget's arguments ---------------------------------------------------------

MODES: dict[str, type[SignalingMode]] = {"direct": Direct, "kernel": Kernel, "proxy": Proxy}


def resolve(signaling: str | SignalingMode, **keywords: Any) -> SignalingMode:
    """The mode for ``RealtimeWidget(signaling=..., **keywords)``.

    ``keywords`` are the widget's mode-specific arguments (None when not given): with a string
    they fill in that mode (an argument of another mode is refused: it would do nothing); with a
    mode object they must be left out (the object holds them).
    """
    given = {name: value for name, value in keywords.items() if value is not None}
    if isinstance(signaling, SignalingMode):
        mode_class: type[SignalingMode] | None = type(signaling)
    else:
        mode_class = MODES.get(signaling) if isinstance(signaling, str) else None
    if mode_class is None:
        raise InvalidInput(
            f"signaling must be one of {', '.join(SIGNALING)} (or dw.Direct(...), "
            f"dw.Kernel(...), dw.Proxy(...)); got {signaling!r}"
        )
    for name in sorted(given):
        owner = next(m for m in MODES.values() if name in m.legacy_keywords)
        if owner is not mode_class:
            raise InvalidInput(
                f'{name}= only applies to signaling="{owner.name}"; this widget uses '
                f'signaling="{mode_class.name}"'
            )
        if isinstance(signaling, SignalingMode):
            field_name = owner.legacy_keywords[name]
            raise InvalidInput(
                f"{name}= cannot be combined with a mode object: give it to the object, "
                f"dw.{owner.__name__}({field_name}=...)"
            )
    if isinstance(signaling, SignalingMode):
        return signaling
    arguments = {mode_class.legacy_keywords[name]: value for name, value in given.items()}
    return mode_class(**arguments)


def default_signaling(backend: Backend | None, **keywords: Any) -> SignalingName:
    """The mode of a widget given no ``signaling=``: ``"kernel"`` for the widget's automatic
    emulator (no backend given, no ``DECART_API_KEY``), else ``"direct"``.

    The automatic emulator runs in the kernel's process, so its signaling through the kernel
    works wherever the notebook works (a remote server, a hub's proxy in front), with no secret
    at stake; only its media has to reach the kernel's host (docs/where-it-works.md). A
    mode-specific keyword (``token_seconds=``, ...) keeps the mode it belongs to.
    """
    if backend is not None or any(value is not None for value in keywords.values()):
        return "direct"
    return "kernel" if is_shared_emulator(default_backend()) else "direct"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = [
    "DEFAULT_TRANSPORT",
    "MEDIA_TRANSPORTS",
    "SIGNALING",
    "AttachedMode",
    "Direct",
    "Kernel",
    "Proxy",
    "SignalingMode",
    "WidgetPort",
    "default_signaling",
    "resolve",
]

"""ICE servers as a user option: a list of RTCIceServer-like dicts, or a function returning one.

``ice_servers=`` (the widget, `RealtimeSession.connect`, `Emulator`) takes the browser's own
shape, ``[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]``, or a
callable (plain or async) returning that list, called for fresh short-lived TURN credentials.
`validate_ice_servers` checks one list and says exactly what is wrong; `resolve_ice_servers`
calls the function when there is one. docs/where-it-works.md says when a TURN server is needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

from .protocol._errors import InvalidInput

IceServerList: TypeAlias = Sequence[Mapping[str, Any]]
IceServersSource: TypeAlias = (
    IceServerList | Callable[[], IceServerList] | Callable[[], Awaitable[IceServerList]]
)

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_KEYS = {"urls", "username", "credential"}


def validate_ice_servers(servers: object) -> list[dict[str, Any]]:
    """A checked copy of ``servers`` (each ``urls`` as a list), or `InvalidInput` naming the
    entry and what is wrong with it."""
    if isinstance(servers, (str, bytes, Mapping)) or not isinstance(servers, Sequence):
        raise InvalidInput(
            'ice_servers must be a list of dicts like {"urls": "turn:host:3478", "username": ...,'
            f' "credential": ...}}, got {type(servers).__name__}'
        )
    return [_checked(index, server) for index, server in enumerate(servers)]


def _checked(index: int, server: object) -> dict[str, Any]:
    where = f"ice_servers[{index}]"
    if not isinstance(server, Mapping):
        raise InvalidInput(f"{where} must be a dict with 'urls', got {type(server).__name__}")
    unknown = set(server) - _KEYS
    if unknown:
        known = "urls, username, credential"
        raise InvalidInput(f"{where} has unknown keys {sorted(unknown)}: use {known}")
    urls = server.get("urls")
    url_list = [urls] if isinstance(urls, str) else urls
    strings = isinstance(url_list, list) and all(isinstance(u, str) for u in url_list)
    if not strings or not url_list:
        raise InvalidInput(f"{where}['urls'] must be a URL or a non-empty list of URLs")
    for url in url_list:
        if not url.startswith(_SCHEMES):
            raise InvalidInput(f"{where}: {url!r} is not a stun:, stuns:, turn: or turns: URL")
    checked: dict[str, Any] = {"urls": list(url_list)}
    for key in ("username", "credential"):
        value = server.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{where}['{key}'] must be a string")
        if value is not None:
            checked[key] = value
    if any(url.startswith(("turn:", "turns:")) for url in url_list) and not (
        "username" in checked and "credential" in checked
    ):
        raise InvalidInput(f"{where}: a TURN server needs a username and a credential")
    return checked


def ice_server_from_url(url: str) -> dict[str, Any]:
    """One server from a command-line URL; TURN credentials ride in it:
    ``turn:user:password@host:3478`` (the ``decart-widget emulator --ice-server`` form)."""
    scheme, _, rest = url.partition(":")
    credentials, at, address = rest.rpartition("@")
    if not at:
        return _checked(0, {"urls": url})
    username, colon, password = credentials.partition(":")
    if not colon:
        raise InvalidInput(f"{url!r}: write TURN credentials as user:password@host:port")
    return _checked(
        0, {"urls": f"{scheme}:{address}", "username": username, "credential": password}
    )


async def resolve_ice_servers(source: IceServersSource | None) -> list[dict[str, Any]]:
    """The checked list of ``source``; a callable is called (and awaited when async) each time."""
    if source is None:
        return []
    value: Any = source() if callable(source) else source
    if inspect.isawaitable(value):
        value = await value
    return validate_ice_servers(value)


def resolve_ice_servers_now(source: IceServersSource | None) -> list[dict[str, Any]]:
    """As `resolve_ice_servers`, for a caller without a running loop (the widget): an async
    callable is refused with a clear message there."""
    if source is None:
        return []
    value: Any = source() if callable(source) else source
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise InvalidInput(
            "the widget calls ice_servers from a notebook cell: give a plain function (or a list)"
        )
    return validate_ice_servers(value)


__all__ = [
    "IceServerList",
    "IceServersSource",
    "ice_server_from_url",
    "resolve_ice_servers",
    "resolve_ice_servers_now",
    "validate_ice_servers",
]
